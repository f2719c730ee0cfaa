/**
 * Whether an error means "the database cannot be reached or written right now" rather than "this
 * request is wrong" or "our code is wrong". Such errors leave the server as 503
 * `STORE_UNAVAILABLE` (never 500 `INTERNAL`): nothing was decided, the caller may retry.
 *
 *   isStoreUnavailable(pgError57P01)          // true: the backend was terminated (restart, failover)
 *   isStoreUnavailable(sqliteBusy)            // true: another process holds the file's lock
 *   isStoreUnavailable(new TypeError('x'))    // false: a bug, reported as INTERNAL
 *
 * Pure: it reads only the error (its `code`, `message`, `cause` and, for an AggregateError, the
 * errors inside), so both dialects and the HTTP error handler share one answer.
 */

/** SQLSTATE classes and codes that say the server, not the statement, is the problem. */
const PG_CLASSES = ['08', '53', '57']; // connection exception, insufficient resources, operator intervention
const PG_CODES = new Set([
  '25006', // read_only_sql_transaction: connected to a standby after a failover
  'XX001', // data_corrupted
  'XX002', // index_corrupted
]);
/** Socket-level failures while connecting to or talking to the database. */
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN']);
/** SQLite result codes (better-sqlite3 `SqliteError.code`, extended codes included) of a locked, read-only or broken file. */
const SQLITE_PREFIXES = ['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_READONLY', 'SQLITE_CANTOPEN', 'SQLITE_IOERR', 'SQLITE_FULL', 'SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_PROTOCOL', 'SQLITE_PERM', 'SQLITE_AUTH'];
/** Messages of errors node-postgres, pg-pool, better-sqlite3 and Kysely throw without a code. */
const MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect/,
  /^Client has encountered a connection error and is not queryable/,
  /^Client was closed and is not queryable/,
  /^Cannot use a pool after calling end on the pool/,
  /^The database connection is not open/,
  /^driver has already been destroyed/,
  /^Query read timeout/,
];

export function isStoreUnavailable(err: unknown, depth = 0): boolean {
  if (depth > 4 || typeof err !== 'object' || err === null) return false;
  const { code, message, cause, errors } = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string') {
    if (/^[0-9A-Z]{5}$/.test(code) && (PG_CLASSES.includes(code.slice(0, 2)) || PG_CODES.has(code))) return true;
    if (NET_CODES.has(code)) return true;
    if (SQLITE_PREFIXES.some((p) => code === p || code.startsWith(`${p}_`))) return true;
  }
  if (typeof message === 'string' && MESSAGES.some((m) => m.test(message))) return true;
  if (Array.isArray(errors) && errors.some((e) => isStoreUnavailable(e, depth + 1))) return true;
  return cause !== undefined && isStoreUnavailable(cause, depth + 1);
}

/** A short, credential-free description for the 503's message and the log (never the connection string). */
export function describeUnavailable(err: unknown): string {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message.split('\n')[0]!.replace(/postgres(ql)?:\/\/\S+/g, 'postgres://…').slice(0, 200) : 'unknown error';
  return typeof code === 'string' ? `${code}: ${text}` : text;
}
