/**
 * Break-glass recovery (`countersign admin recover`): a new admin token for a server whose admin
 * tokens are all lost. It opens the database directly and needs the server secret file, whose
 * key MACs credential rows: a row inserted by someone who can only write the database never
 * authenticates, so only someone on the server host (file and database) can do this. Audited as
 * `admin_recovered`, signed and redacted under the server's own audit key.
 */
import { existsSync } from 'node:fs';
import { CountersignError } from '@countersign/core';
import { loadOrCreateAuditKey } from '../audit/crypto.ts';
import type { RuntimeConfig } from '../config.ts';
import { Engine } from '../engine/engine.ts';
import { connect, parseDatabaseUrl } from '../store/connect.ts';
import { readServerSecret } from './server-secret.ts';

export async function recoverAdmin(config: RuntimeConfig, name: string) {
  const parsed = parseDatabaseUrl(config.databaseUrl);
  if (parsed.dialect === 'sqlite' && (parsed.target === ':memory:' || !existsSync(parsed.target))) {
    throw new CountersignError('VALIDATION_FAILED', `no database at ${parsed.target}: point --database at the one your servers use`);
  }
  if (config.serverSecretPath === null) throw new CountersignError('VALIDATION_FAILED', 'say where the server secret file is: --secret-file or COUNTERSIGN_SERVER_SECRET_PATH');
  const secret = readServerSecret(config.serverSecretPath);
  if (!secret) {
    throw new CountersignError('VALIDATION_FAILED', `no server secret at ${config.serverSecretPath}: recovery needs the secret file the servers use (run it on the server host, or pass --secret-file)`);
  }
  if (config.audit.keyPath === null || !existsSync(config.audit.keyPath)) {
    throw new CountersignError('VALIDATION_FAILED', `no audit key at ${config.audit.keyPath ?? '(none)'}: pass --audit-key (the file the servers sign with)`);
  }
  const engine = await Engine.open({ connection: await connect(config.databaseUrl), auditKey: loadOrCreateAuditKey(config.audit.keyPath), guard: config.guard, serverSecret: secret });
  try {
    if ((await engine.countCredentials()) === 0) {
      throw new CountersignError('VALIDATION_FAILED', 'this database has never been used by a Countersign server (no credentials): point --database at the one your servers use');
    }
    return await engine.credentials.recoverAdmin(name, { type: 'system', id: 'admin-recover', name: 'countersign admin recover' });
  } finally {
    await engine.close();
  }
}
