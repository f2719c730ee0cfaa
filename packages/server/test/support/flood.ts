/** A flood of junk for the queue tests (queue-http, dashboard-queue): a policy where junk is low risk yet reviewed, and a bounded pool. */

/** Junk is low risk but still asks a human; delete_data is critical; everything else keeps the defaults. */
export const FLOOD_POLICY = `
actions:
  defaultWeight: 0.5
  junk_ping: { weight: 0.0, reversible: true }
  delete_data: { weight: 0.9, reversible: false }
levels:
  low: { sla: 60m }
  medium: { sla: 30m }
  high: { sla: 15m }
  critical: { sla: 5m }
rules:
  - name: junk-is-reviewed
    when: { action: junk_ping }
    then: { review: true }
  - name: deletes-are-critical
    when: { action: delete_data }
    then: { review: true, riskAtLeast: critical }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 10m }
  onFinalTimeout: reject
`;

/** Runs `fn` over `items` with at most `width` at once. */
export async function pool<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}
