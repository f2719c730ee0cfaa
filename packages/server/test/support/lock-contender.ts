/**
 * A child process for the cross-process lock test: takes the signer state's lock `rounds` times;
 * inside, logs enter/exit to `log` and moves the state one step on (compare-and-swap), sleeping
 * between so two contenders would interleave without the lock.
 * Usage: node --import tsx lock-contender.ts STATE_PATH LOG_PATH ROUNDS
 */
import { appendFileSync } from 'node:fs';
import { fileSignerState } from '../../src/audit/signer-state.ts';

const [path, log, roundsText] = process.argv.slice(2) as [string, string, string];
const state = fileSignerState(path, { lockWaitMs: 120_000 });
const root = Buffer.alloc(32).toString('base64');
for (let i = 0; i < Number(roundsText); i++) {
  await state.locked(async () => {
    appendFileSync(log, `enter ${process.pid}\n`);
    const current = state.read();
    await new Promise((r) => setTimeout(r, 5 + Math.random() * 15));
    const size = (current?.treeSize ?? 0) + 1;
    const checkpoint = { treeSize: size, rootHash: root, timestamp: new Date().toISOString(), keyId: '0123456789abcdef', signature: Buffer.alloc(64).toString('base64') };
    state.write({ keyId: '0123456789abcdef', treeSize: size, rootHash: root, checkpoint }, current);
    appendFileSync(log, `exit ${process.pid}\n`);
  });
}
