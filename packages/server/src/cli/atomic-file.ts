/**
 * Writing a file the CLI was told to write (`--out`) without harming what is there: the bytes go
 * to a new temporary file beside the target (created exclusively, `O_NOFOLLOW`, mode 0600, so
 * nobody else can read an audit export or a report while it is written, and nothing planted at
 * that name is opened), are flushed to disk, and only then renamed over the target. A failure at
 * any point removes the temporary file and leaves the target exactly as it was; a target that is
 * a symbolic link (or not a regular file) is refused before anything is written.
 *
 *   const file = await AtomicFile.create('trail.jsonl');
 *   try { for await (const chunk of body) await file.write(chunk); await file.commit(); }
 *   catch (err) { await file.abort(); throw err; }
 */
import { randomBytes } from 'node:crypto';
import { constants, lstatSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CountersignError } from '@countersign/core/errors';
import { safe } from './format.ts';

export class AtomicFile {
  private done = false;

  private constructor(
    readonly target: string,
    readonly temp: string,
    private readonly handle: FileHandle,
  ) {}

  static async create(path: string, flag = '--out'): Promise<AtomicFile> {
    const target = resolve(path);
    refuseOddTarget(target, flag);
    const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.part`);
    try {
      const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      return new AtomicFile(target, temp, handle);
    } catch (err) {
      throw new CountersignError('VALIDATION_FAILED', `${flag}: cannot write in ${safe(dirname(target))}: ${(err as Error).message}`);
    }
  }

  async write(chunk: Uint8Array | string): Promise<void> {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, offset, bytes.length - offset);
      offset += bytesWritten;
    }
  }

  /** Flushes, closes and renames into place. */
  async commit(flag = '--out'): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    this.done = true;
    try {
      refuseOddTarget(this.target, flag); // it may have changed meanwhile; rename would replace a link, never follow it, but say so
      await rename(this.temp, this.target);
    } catch (err) {
      await unlink(this.temp).catch(() => {});
      throw err instanceof CountersignError ? err : new CountersignError('VALIDATION_FAILED', `${flag}: cannot move the file into place at ${safe(this.target)}: ${(err as Error).message}`);
    }
  }

  /** Removes the temporary file; the target is untouched. Safe to call after a failed commit. */
  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.handle.close().catch(() => {});
    }
    await unlink(this.temp).catch(() => {});
  }
}

/** Writes a whole text file the same way. */
export async function writeFileAtomically(path: string, text: string, flag = '--out'): Promise<void> {
  const file = await AtomicFile.create(path, flag);
  try {
    await file.write(text);
    await file.commit(flag);
  } catch (err) {
    await file.abort();
    throw err;
  }
}

function refuseOddTarget(target: string, flag: string): void {
  let stat;
  try {
    stat = lstatSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new CountersignError('VALIDATION_FAILED', `${flag}: cannot check ${safe(target)}: ${(err as Error).message}`);
  }
  if (stat.isSymbolicLink()) throw new CountersignError('VALIDATION_FAILED', `${flag}: ${safe(target)} is a symbolic link; refusing to write through it (remove it or choose another path)`);
  if (!stat.isFile()) throw new CountersignError('VALIDATION_FAILED', `${flag}: ${safe(target)} exists and is not a regular file`);
}
