/**
 * Where the audit signer keeps what it last signed: a small JSON file next to the key
 * (`countersign-audit-key.pem` → `countersign-audit-key.state.json`), outside the database, so a
 * database writer cannot make it forget. Written atomically (a temp file in the same directory,
 * fsync, rename, fsync of the directory; mode 0600) before a checkpoint is published.
 *
 * Servers on one host that share the key file share this file, and take its lock (a lock file
 * created exclusively, holding the owner's pid and a random token; only a dead owner's lock is
 * broken) for the whole read → check → sign → write, and the write itself is a compare-and-swap,
 * so they never overwrite each other's newer state with an older one. Servers on other hosts keep their own state and accept each other's checkpoints when
 * those are signed by the key and extend their own (audit/signer.ts).
 *
 * A key that lives in memory (in-memory databases, tests) keeps its state in memory, attached
 * to the key object, so engines sharing one key in one process share it.
 */
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CountersignError, parseSignerState, signerStateJson, type SignerState } from '@countersign/core';
import type { AuditKey } from './crypto.ts';

export interface SignerStateStore {
  /** Where the state lives, for messages (a path, or "memory"). */
  readonly where: string;
  /** The state, or null when none was ever written. Throws (STORE_UNAVAILABLE) on a damaged one. */
  read(): SignerState | null;
  /**
   * Replaces the state, durably, before the caller publishes anything signed — as a
   * compare-and-swap: the state is re-read just before the rename, and the write is refused
   * (STORE_UNAVAILABLE) unless it is still `expected` (what the caller read under the lock) and
   * `next` is no smaller. A process that broke the lock wrongly cannot make two writers overwrite
   * each other unnoticed.
   */
  write(next: SignerState, expected: SignerState | null): void;
  /** Runs `fn` holding the state's lock (across processes for a file). */
  locked<T>(fn: () => Promise<T>): Promise<T>;
}

/** Details of every error the state store throws: the signer shows them as a `state_io` refusal. */
export interface SignerStateErrorDetails {
  signerState: string;
}

export function signerStateError(where: string, message: string): CountersignError {
  return new CountersignError('STORE_UNAVAILABLE', message, { signerState: where } satisfies SignerStateErrorDetails);
}

export function isSignerStateError(err: unknown): err is CountersignError {
  return err instanceof CountersignError && typeof (err.details as Partial<SignerStateErrorDetails> | undefined)?.signerState === 'string';
}

/** The state file of a key file: its name with `.state.json` in place of `.pem`. */
export function signerStatePath(keyPath: string): string {
  const name = basename(keyPath).replace(/\.pem$/i, '');
  return join(dirname(keyPath), `${name}.state.json`);
}

const memoryStates = new WeakMap<AuditKey, SignerStateStore>();

/** The state store for a key: a file next to it, or (a key in memory) memory attached to it. */
export function signerStateFor(key: AuditKey): SignerStateStore {
  if (key.path !== null) return fileSignerState(signerStatePath(key.path));
  let store = memoryStates.get(key);
  if (!store) {
    store = memorySignerState();
    memoryStates.set(key, store);
  }
  return store;
}

function sameState(a: SignerState | null, b: SignerState | null): boolean {
  if (a === null || b === null) return a === b;
  return a.keyId === b.keyId && a.treeSize === b.treeSize && a.rootHash === b.rootHash;
}

function checkSwap(where: string, current: SignerState | null, next: SignerState, expected: SignerState | null): void {
  if (!sameState(current, expected)) {
    throw signerStateError(where, `the audit signer's state ${where} changed while this server held its lock (now ${current ? `${current.treeSize} entries` : 'absent'}, expected ${expected ? `${expected.treeSize}` : 'absent'}): another process wrote it; nothing was signed`);
  }
  if (expected !== null && next.treeSize < expected.treeSize) {
    throw signerStateError(where, `refusing to move the audit signer's state ${where} back from ${expected.treeSize} to ${next.treeSize} entries`);
  }
}

export function memorySignerState(): SignerStateStore {
  let state: SignerState | null = null;
  let chain: Promise<unknown> = Promise.resolve();
  return {
    where: 'memory',
    read: () => (state === null ? null : structuredClone(state)),
    write: (next, expected) => {
      checkSwap('memory', state, next, expected);
      state = structuredClone(next);
    },
    locked<T>(fn: () => Promise<T>): Promise<T> {
      const run = chain.then(fn, fn);
      chain = run.catch(() => {});
      return run;
    },
  };
}

/** How long to wait for the lock before giving up (the caller retries at its next tick, and shows the wait as a `state_io` refusal). */
const LOCK_WAIT_MS = 15_000;

/**
 * The lock file holds `<pid> <random token>`. It is taken by an exclusive create, released only
 * by the holder whose token it still holds, and broken only when its pid is dead on this host —
 * never for its age: a live holder may be slow (its database insert blocked), and a lock broken
 * under it lets two signers in at once. (A pid reused by an unrelated process keeps the lock
 * held; the wait then fails with a message saying which file to remove.)
 */
export function fileSignerState(path: string, options: { lockWaitMs?: number } = {}): SignerStateStore {
  const lockPath = `${path}.lock`;
  const lockWait = options.lockWaitMs ?? LOCK_WAIT_MS;
  let held: string | null = null;
  let chain: Promise<unknown> = Promise.resolve();

  const acquire = async (): Promise<string> => {
    const deadline = Date.now() + lockWait;
    const token = `${process.pid} ${randomBytes(16).toString('hex')}\n`;
    for (;;) {
      try {
        const fd = openSync(lockPath, 'wx', 0o600);
        try {
          writeSync(fd, token);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        return token;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw signerStateError(path, `cannot take the audit signer's lock ${lockPath}: ${(err as Error).message}`);
        }
      }
      const dead = deadOwnerLock(lockPath);
      if (dead !== null) {
        breakLock(lockPath, dead);
        continue;
      }
      if (Date.now() > deadline) {
        throw signerStateError(path, `the audit signer's lock ${lockPath} is held by another live process; try again (remove it only if no server or CLI on this host is running)`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const release = (token: string): void => {
    // Only our own lock: a lock another process holds now is never removed.
    try {
      if (readFileSync(lockPath, 'utf8') === token) rmSync(lockPath, { force: true });
    } catch {
      // gone already
    }
  };

  return {
    where: path,
    read() {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw signerStateError(path, `cannot read the audit signer's state ${path}: ${(err as Error).message}`);
      }
      const parsed = parseSignerState(text);
      if (!parsed.ok) throw new CountersignError('STORE_UNAVAILABLE', `the audit signer's state ${path} is damaged (${parsed.reason}); restore it from a backup or re-adopt the trail (countersign audit trust-current)`, { damaged: path });
      return parsed.state;
    },
    write(next, expected) {
      if (held === null || !lockStillOurs(lockPath, held)) throw signerStateError(path, `the audit signer's state ${path} is written only under its lock, and the lock is no longer this process's`);
      let current: SignerState | null;
      try {
        current = this.read();
      } catch (err) {
        if (isSignerStateError(err)) throw err;
        // Damaged on disk: only an adoption (expecting no readable state) may replace it.
        if (expected !== null) throw signerStateError(path, `the audit signer's state ${path} was damaged while this server held its lock`);
        current = null;
      }
      checkSwap(path, current, next, expected);
      try {
        writeAtomically(path, signerStateJson(next));
      } catch (err) {
        throw signerStateError(path, (err as Error).message);
      }
    },
    locked<T>(fn: () => Promise<T>): Promise<T> {
      // In-process callers queue; across processes the lock file serialises.
      const run = chain.then(async () => {
        const token = await acquire();
        held = token;
        try {
          return await fn();
        } finally {
          held = null;
          release(token);
        }
      });
      chain = run.catch(() => {});
      return run;
    },
  };
}

function lockStillOurs(lockPath: string, token: string): boolean {
  try {
    return readFileSync(lockPath, 'utf8') === token;
  } catch {
    return false;
  }
}

/** The lock's text when its owner (a pid on this host) is dead, else null (alive, ours, or unreadable). */
function deadOwnerLock(lockPath: string): string | null {
  let text: string;
  try {
    text = readFileSync(lockPath, 'utf8');
  } catch {
    return null; // gone already: try again
  }
  const pid = Number(text.split(' ')[0]?.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    // Not a lock this code wrote: only its age can tell, and only a very old one is broken.
    try {
      return Date.now() - statSync(lockPath).mtimeMs > 10 * 60_000 ? text : null;
    } catch {
      return null;
    }
  }
  if (pid === process.pid) return null; // another signer in this very process holds it: wait
  try {
    process.kill(pid, 0);
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH' ? text : null;
  }
}

/**
 * Breaks a dead owner's lock without removing a live one: the lock is moved aside (rename is
 * atomic), and if what was moved is not the dead owner's lock after all (someone broke it and
 * took it in between), it is put back with link (which never replaces a file).
 */
function breakLock(lockPath: string, deadText: string): void {
  const aside = `${lockPath}.${process.pid}.${randomBytes(6).toString('hex')}.broken`;
  try {
    renameSync(lockPath, aside);
  } catch {
    return; // gone already
  }
  try {
    if (readFileSync(aside, 'utf8') !== deadText) {
      try {
        linkSync(aside, lockPath);
      } catch {
        // someone took the lock meanwhile; the state's compare-and-swap still catches a double write
      }
    }
  } finally {
    rmSync(aside, { force: true });
  }
}

/** temp file (0600) in the same directory → fsync → rename over `path` → fsync the directory. */
export function writeAtomically(path: string, text: string, mode = 0o600): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    syncDirectory(dirname(path));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new CountersignError('STORE_UNAVAILABLE', `cannot write ${path}: ${(err as Error).message}`);
  }
}

export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
