/**
 * Re-records test/fixtures/wire-v1.json from a live server:
 *
 *   node --import tsx packages/client/test/support/record-wire.ts
 *
 * Run it when the API changes on purpose, and commit the new recording with the change, so the
 * diff shows what changed on the wire.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Countersign } from '../../src/index.ts';
import { startServer } from './server.ts';
import { recordingFetch, scenario, type Exchange, type WireRecording } from './wire.ts';

export async function recordLive(): Promise<WireRecording> {
  const server = await startServer();
  try {
    const exchanges: Exchange[] = [];
    const pem = await (await fetch(`${server.url}/v1/audit/public-key`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
    const der = createPublicKey(pem).export({ type: 'spki', format: 'der' });
    const auditKeyId = createHash('sha256').update(der).digest('hex').slice(0, 16);
    const cs = new Countersign({ url: server.url, apiKey: server.agentKey, env: {}, auditPublicKey: auditKeyId, fetch: recordingFetch(exchanges), onWarning: () => {} });
    const review = async (id: string, body: Record<string, unknown>) => {
      const res = await fetch(`${server.url}/v1/requests/${id}/reviews`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status !== 200) throw new Error(`review of ${id}: ${res.status} ${await res.text()}`);
    };
    await scenario(cs, {
      approveModified: (id, args) => review(id, { verdict: 'approve', args }),
      reject: (id, reason) => review(id, { verdict: 'reject', reason }),
    });
    return { recordedWith: 'node --import tsx packages/client/test/support/record-wire.ts', auditKeyId, exchanges };
  } finally {
    await server.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const recording = await recordLive();
  const out = fileURLToPath(new URL('../fixtures/wire-v1.json', import.meta.url));
  writeFileSync(out, `${JSON.stringify(recording, null, 2)}\n`);
  console.log(`recorded ${recording.exchanges.length} exchanges into ${out}`);
}
