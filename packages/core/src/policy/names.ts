/**
 * One normal form for action names, so a policy about `wire_transfer` also governs
 * `Wire_Transfer`, `WIRE_TRANSFER`, `wire-transfer` and `wireTransfer` (issue 12, finding 6:
 * names matched case-sensitively and exactly, so a respelling escaped every rule and block).
 *
 * The policy stores its action names in this form (keys of `actions`, `block`,
 * `requireApproval`, rule `action` lists, `actionMatches` keywords, per-agent lists) and
 * `evaluate` judges a request by the normal form of its action; the request itself keeps the
 * agent's spelling for display.
 *
 * | written | normal form |
 * | --- | --- |
 * | `wire_transfer`, `Wire_Transfer`, `WIRE_TRANSFER` | `wire_transfer` |
 * | `wire-transfer`, `Wire-Transfer`, `wire transfer` | `wire_transfer` |
 * | `wireTransfer`, `WireTransfer` | `wire_transfer` |
 * | `HTTPRequest`, `httpRequest` | `http_request` |
 * | `getHTTP2Response` | `get_http2_response` |
 * | `s3Upload` | `s3_upload` |
 * | `github__createIssue` (MCP `server__tool`) | `github__create_issue` |
 * | `db.dropTable`, `k8s:deletePod` | `db.drop_table`, `k8s:delete_pod` |
 *
 * Rules: ASCII letters are case-folded; `-` and whitespace become `_`; a camelCase boundary (a
 * lower-case letter or digit before an upper-case one, or the last capital of an acronym before
 * a lower-case letter: `HTTPRequest`) gets a `_`, unless a separator is already there; `_`, `.`
 * and `:` are kept as written, so a double underscore (MCP's `server__tool`) stays double.
 * One pass over the string, no regular expression: linear in its length whatever the input.
 */

const isUpper = (c: number): boolean => c >= 65 && c <= 90;
const isLower = (c: number): boolean => c >= 97 && c <= 122;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;

export function normalizeActionName(name: string): string {
  const out: string[] = [];
  const n = name.length;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c === 45 || isSpace(c)) {
      out.push('_');
      continue;
    }
    if (isUpper(c)) {
      const prev = i > 0 ? name.charCodeAt(i - 1) : -1;
      const next = i + 1 < n ? name.charCodeAt(i + 1) : -1;
      if (isLower(prev) || isDigit(prev) || (isUpper(prev) && isLower(next))) out.push('_');
      out.push(String.fromCharCode(c + 32));
      continue;
    }
    out.push(name.charAt(i).toLowerCase());
  }
  return out.join('');
}

/** Whether two spellings name the same action. */
export function sameAction(a: string, b: string): boolean {
  return a === b || normalizeActionName(a) === normalizeActionName(b);
}
