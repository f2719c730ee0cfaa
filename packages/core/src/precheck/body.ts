/**
 * The request body a validator receives (documented in the README, "Governance pre-checks").
 * Bounded and free of Countersign's secrets: the payload that would run (action, args, the
 * alternative's name), who asks (agent name and id), the risk as assessed before the validators,
 * the request's id, the stage (create or vote) and the context's ids only. An OPA validator gets
 * the same object as `{input: …}`.
 */
import { canonicalJson } from '../canonical.ts';
import type { JsonObject, RiskLevel } from '../schemas.ts';

/** The largest body Countersign sends; a larger payload is not sent and counts as the validator's error. */
export const MAX_PRECHECK_BODY_BYTES = 256 * 1024;

export interface PrecheckRequestBody {
  readonly version: 1;
  readonly validator: string;
  readonly stage: 'create' | 'vote';
  readonly requestId: string;
  readonly action: string;
  readonly args: JsonObject;
  readonly alternative: string | null;
  readonly agent: { readonly id: string; readonly name: string };
  readonly risk: { readonly level: RiskLevel; readonly score: number };
  readonly context: { readonly incidentId?: string; readonly relatedIncidents?: readonly string[] };
}

export interface PrecheckSubject {
  stage: 'create' | 'vote';
  requestId: string;
  action: string;
  args: JsonObject;
  alternative: string | null;
  agent: { id: string; name: string };
  risk: { level: RiskLevel; score: number };
  context: Readonly<Record<string, unknown>> | undefined;
}

/** The body for one validator: only the context's ids (`incidentId`, `relatedIncidents`), each bounded. */
export function precheckRequestBody(validator: string, s: PrecheckSubject): PrecheckRequestBody {
  const ctx = s.context ?? {};
  const incidentId = typeof ctx['incidentId'] === 'string' ? ctx['incidentId'].slice(0, 200) : undefined;
  const related = Array.isArray(ctx['relatedIncidents'])
    ? ctx['relatedIncidents'].filter((x): x is string => typeof x === 'string').slice(0, 100).map((x) => x.slice(0, 200))
    : undefined;
  return {
    version: 1,
    validator,
    stage: s.stage,
    requestId: s.requestId,
    action: s.action,
    args: s.args,
    alternative: s.alternative,
    agent: { id: s.agent.id, name: s.agent.name },
    risk: { level: s.risk.level, score: s.risk.score },
    context: { ...(incidentId !== undefined ? { incidentId } : {}), ...(related !== undefined ? { relatedIncidents: related } : {}) },
  };
}

/** The bytes sent: canonical JSON of the body (http) or of `{input: body}` (opa); null when over MAX_PRECHECK_BODY_BYTES. */
export function precheckWireBody(kind: 'http' | 'opa', body: PrecheckRequestBody): string | null {
  const text = canonicalJson(kind === 'opa' ? { input: body } : body);
  return new TextEncoder().encode(text).length > MAX_PRECHECK_BODY_BYTES ? null : text;
}
