/**
 * Canonical JSON (RFC 8785 style for the values agents send): object keys sorted, no
 * whitespace. Two payloads are "the same action" exactly when their canonical forms are equal,
 * which is what approvals and receipts bind to.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
    return value === undefined ? 'null' : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The payload an approval covers: the action and its exact args. */
export function payloadKey(action: string, args: Record<string, unknown>): string {
  return canonicalJson({ action, args });
}
