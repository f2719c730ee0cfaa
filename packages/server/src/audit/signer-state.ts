/**
 * Where the audit signer keeps what it last signed: a small JSON file next to the key
 * (`countersign-audit-key.pem` → `countersign-audit-key.state.json`), outside the database, so a
 * database writer cannot make it forget. Written atomically (a temp file in the same directory,
 * fsync, rename, fsync of the directory; mode 0600) before a checkpoint is published.
 *
 * Servers on one host that share the key file share this file, and take its lock (a lock file
 * created exclusively, holding the owner's pid; a dead owner's lock is broken) for the whole
 * read → check → sign → write, so they never overwrite each other's newer state with an older
 * one. Servers on other hosts keep their own state and accept each other's checkpoints when
 * those are signed by the key and extend their own (audit/signer.ts).
 *
 * A key that lives in memory (in-memory databases, tests) keeps its state in memory, attached
 * to the key object, so engines sharing one key in one process share it.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CountersignError, parseSignerState, signerStateJson, type SignerState } from '@countersign/core';
import type { AuditKey } from './crypto.ts';

export interface SignerStateStore {
  /** Where the state lives, for messages (a path, or "memory"). */
  readonly where: string;
  /** The state, or null when none was ever written. Throws (STORE_UNAVAILABLE) on a damaged one. */
  read(): SignerState | null;
  /** Replaces the state, durably, before the caller publishes anything signed. */
  write(state: SignerState): void;
  /** Runs `fn` holding the state's lock (across processes for a file). */
  locked<T>(fn: () => Promise<T>): Promise<T>;
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

export function memorySignerState(): SignerStateStore {
  let state: SignerState | null = null;
  let chain: Promise<unknown> = Promise.resolve();
  return {
    where: 'memory',
    read: () => (state === null ? null : structuredClone(state)),
    write: (next) => {
      state = structuredClone(next);
    },
    locked<T>(fn: () => Promise<T>): Promise<T> {
      const run = chain.then(fn, fn);
      chain = run.catch(() => {});
      return run;
    },
  };
}

/** How long a lock may be held before another process treats it as abandoned (its owner hung or was killed). */
const STALE_LOCK_MS = 60_000;
/** How long to wait for the lock before giving up (the caller retries at its next tick). */
const LOCK_WAIT_MS = 15_000;

export function fileSignerState(path: string): SignerStateStore {
  const lockPath = `${path}.lock`;
  let held = false;
  let chain: Promise<unknown> = Promise.resolve();

  const acquire = async (): Promise<void> => {
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        const fd = openSync(lockPath, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new CountersignError('STORE_UNAVAILABLE', `cannot take the audit signer's lock ${lockPath}: ${(err as Error).message}`);
        }
      }
      if (lockAbandoned(lockPath)) {
        rmSync(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new CountersignError('STORE_UNAVAILABLE', `the audit signer's lock ${lockPath} is held by another process; try again (remove it only if no server on this host is running)`);
      await new Promise((r) => setTimeout(r, 25));
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
        throw new CountersignError('STORE_UNAVAILABLE', `cannot read the audit signer's state ${path}: ${(err as Error).message}`);
      }
      const parsed = parseSignerState(text);
      if (!parsed.ok) throw new CountersignError('STORE_UNAVAILABLE', `the audit signer's state ${path} is damaged (${parsed.reason}); restore it from a backup or re-adopt the trail (countersign audit trust-current)`);
      return parsed.state;
    },
    write(state) {
      if (!held) throw new Error('the signer state is written only under its lock');
      writeAtomically(path, signerStateJson(state));
    },
    locked<T>(fn: () => Promise<T>): Promise<T> {
      // In-process callers queue; across processes the lock file serialises.
      const run = chain.then(async () => {
        await acquire();
        held = true;
        try {
          return await fn();
        } finally {
          held = false;
          rmSync(lockPath, { force: true });
        }
      });
      chain = run.catch(() => {});
      return run;
    },
  };
}

function lockAbandoned(lockPath: string): boolean {
  let text: string;
  let age: number;
  try {
    text = readFileSync(lockPath, 'utf8');
    age = Date.now() - statSync(lockPath).mtimeMs;
  } catch {
    return false; // gone already (or unreadable): try again
  }
  const pid = Number(text.trim());
  if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true; // its owner is dead
    }
  }
  return age > STALE_LOCK_MS;
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
