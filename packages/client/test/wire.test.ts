/**
 * Version skew, as far as it can be tested without a previous release: the wire format of the
 * current API, recorded from a live server (fixtures/wire-v1.json, made by
 * support/record-wire.ts) and replayed through this client.
 *
 * What it catches: a client change that no longer reads what the server sends (a renamed or
 * newly required field, a status code handled differently, the error body, the event stream,
 * the receipt bytes and the key response), and, in the live test, a server change to the shape
 * of any of those responses (the recording must then be renewed on purpose, and the diff shows
 * the change). What it does not: an older published client against this server, or this client
 * against an older server; behaviour not in the session (e.g. every error code, pagination,
 * operator routes); and values, not shapes, in the live comparison.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Countersign, CountersignError } from '../src/index.ts';
import { recordLive } from './support/record-wire.ts';
import { exchangeShape, replayingFetch, scenario, type Operator, type WireRecording } from './support/wire.ts';

const RECORDING = JSON.parse(readFileSync(new URL('./fixtures/wire-v1.json', import.meta.url), 'utf8')) as WireRecording;
const NOBODY: Operator = { approveModified: async () => {}, reject: async () => {} };

function replayClient(recording: WireRecording) {
  const fetch = replayingFetch(recording);
  const cs = new Countersign({ url: 'http://127.0.0.1:9', apiKey: 'csk_replay', env: {}, auditPublicKey: recording.auditKeyId, fetch, onWarning: () => {} });
  return { cs, fetch };
}

describe('the recorded wire format, replayed through this client', () => {
  it('reads every recorded response as the live session did', async () => {
    const { cs, fetch } = replayClient(RECORDING);
    const outcomes = await scenario(cs, NOBODY);
    expect(outcomes.auto).toMatchObject({ status: 'approved', executedStatus: 'executed', decision: { outcome: 'approved', decidedBy: 'policy', args: { ip: '203.0.113.7' } } });
    expect(outcomes.replayed).toEqual({ replayed: true, sameId: true });
    expect(outcomes.modified).toEqual({ ran: { host: 'ws-wire', mode: 'network-only' }, finalStatus: 'executed' });
    expect(outcomes.rejected.code).toBe('APPROVAL_REJECTED');
    expect(outcomes.rejected.message).toMatch(/a domain controller/);
    expect(outcomes.cancelled).toEqual({ status: 'cancelled', reason: 'no longer needed' });
    expect(outcomes.events).toEqual(['executed']);
    expect(outcomes.invalid.code).toBe('VALIDATION_FAILED');
    expect(fetch.remaining()).toBe(0);
  });

  it('checks the recorded receipts for real: an edited approval in the recording is refused', async () => {
    const edited = structuredClone(RECORDING);
    const first = edited.exchanges.find((e) => e.method === 'POST' && e.status === 201)!;
    first.body = first.body.replaceAll('"ip":"203.0.113.7"', '"ip":"198.51.100.66"'); // the args and the decision's
    const { cs } = replayClient(edited);
    const err = await scenario(cs, NOBODY).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CountersignError);
    expect((err as CountersignError).code).toBe('RECEIPT_MISMATCH');
  });

  it('reads a server from before named escalation: an escalation without operators, groups or finalAuthority', async () => {
    const older = structuredClone(RECORDING);
    let stripped = 0;
    for (const e of older.exchanges) {
      const before = e.body;
      e.body = e.body.replace(/,"operators":\[[^\]]*\],"groups":\[[^\]]*\],"finalAuthority":(?:true|false)/g, '');
      if (e.body !== before) stripped++;
    }
    expect(stripped).toBeGreaterThan(0); // the recording has pending requests with an escalation
    const { cs, fetch } = replayClient(older);
    const outcomes = await scenario(cs, NOBODY);
    expect(outcomes.modified).toEqual({ ran: { host: 'ws-wire', mode: 'network-only' }, finalStatus: 'executed' });
    expect(outcomes.cancelled).toEqual({ status: 'cancelled', reason: 'no longer needed' });
    expect(fetch.remaining()).toBe(0);
  });

  it('the server on this branch still answers in the recorded shapes', async () => {
    const live = await recordLive();
    expect(live.exchanges.map(exchangeShape)).toEqual(RECORDING.exchanges.map(exchangeShape));
  }, 60_000);
});
