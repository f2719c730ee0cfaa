/**
 * Red-team review of issue 12 (branch review-claim): the Python client and version 2 receipts.
 * The server now signs every runnable approval as version 2 (nonce, expiresAt). The Python
 * client must verify them (and then claim): its signed message must be the server's.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { receiptMessage, type ReceiptBody } from '@countersign/core';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('review: Python receipts', () => {
  it('signs over the same message as the server for a version 2 receipt (nonce and expiresAt included)', () => {
    const body: ReceiptBody = {
      version: 2,
      requestId: 'req_01',
      outcome: 'approved',
      decidedBy: 'policy',
      deciders: [],
      decidedAt: '2026-03-01T10:00:00.000Z',
      payloadHash: 'a'.repeat(64),
      keyId: '0123456789abcdef',
      nonce: 'b'.repeat(32),
      expiresAt: '2026-03-01T11:00:00.000Z',
    };
    const py = execFileSync(
      'python3',
      ['-c', 'import json,sys; from countersign.receipts import receipt_message; sys.stdout.write(receipt_message(json.loads(sys.argv[1])).decode())', JSON.stringify(body)],
      { cwd: ROOT, encoding: 'utf8' },
    );
    expect(py).toBe(new TextDecoder().decode(receiptMessage(body)));
  });

  // The guard's claim is exercised behaviourally in test_live.py (test_an_approval_is_claimed_once_and_a_replay_never_runs),
  // run by python-client.test.ts against a real server: a replayed claim is ALREADY_EXECUTED and guard() runs nothing.
});
