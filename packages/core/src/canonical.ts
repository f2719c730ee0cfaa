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
  // Plain loops and string appends: the reader path keys payloads of agent-sized args many times.
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  // The default sort orders strings by UTF-16 code units, as RFC 8785 asks.
  const keys = Object.keys(object).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const v = object[key];
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

/** The payload an approval covers: the action and its exact args. */
export function payloadKey(action: string, args: Record<string, unknown>): string {
  return canonicalJson({ action, args });
}
