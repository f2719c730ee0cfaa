/**
 * The `prechecks:` section of the policy file: governance validators Countersign calls before a
 * request is routed (issue 18, Maximus' Guardian). Validated with the rest of the policy file
 * (policy/schema.ts), resolved into `Policy.prechecks` (policy/load.ts). A validator's URL comes
 * from here only, never from a request.
 */
import { z } from 'zod';
import { ActionName, RiskLevel } from '../schemas.ts';

/** At most this many validators; each is called on every matching create. */
export const MAX_PRECHECKS = 16;

const Name = z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/, 'a validator name is a letter then letters, digits, _ . - (at most 64)');

/** http(s) only, no user:password in the URL (secrets come from `headersEnv`), no fragment. */
const ValidatorUrl = z
  .string()
  .max(2000)
  .superRefine((text, ctx) => {
    let u: URL;
    try {
      u = new URL(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a URL' });
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') ctx.addIssue({ code: 'custom', message: 'a validator URL is http: or https:' });
    if (u.username !== '' || u.password !== '') ctx.addIssue({ code: 'custom', message: 'no credentials in a validator URL: put them in the variable headersEnv names' });
    if (u.hash !== '') ctx.addIssue({ code: 'custom', message: 'no #fragment in a validator URL' });
  });

/** An OPA document path: `countersign/allow` or `a/b/c` (letters, digits, _ and /), no leading slash. */
const OpaPath = z.string().max(500).regex(/^[A-Za-z_][A-Za-z0-9_]*(\/[A-Za-z_][A-Za-z0-9_]*)*$/, 'an OPA path is slash-separated identifiers, e.g. countersign/precheck');

export const PrecheckFile = z.strictObject({
  name: Name,
  kind: z.enum(['http', 'opa']),
  url: ValidatorUrl,
  /** OPA only: the document under /v1/data/ that decides. */
  path: OpaPath.optional(),
  timeoutMs: z.int().min(50).max(30_000).optional(),
  /** What a failure (timeout, non-2xx, bad body) counts as: deny (the default), allow, or raise the risk to `raiseTo`. */
  onError: z.enum(['deny', 'allow', 'raise']).optional(),
  /** Only for these actions and/or risk levels (before the validator's own effect); every request when absent. */
  when: z.strictObject({ actions: z.array(ActionName).min(1).max(500).optional(), risk: z.array(RiskLevel).min(1).optional() }).optional(),
  /** The level `onError: raise` raises to (default high). */
  raiseTo: RiskLevel.optional(),
  /** The name of a server environment variable holding extra request headers as a JSON object (e.g. an Authorization token). */
  headersEnv: z.string().regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'an environment variable name (A-Z, 0-9, _)').optional(),
});
export type PrecheckFile = z.output<typeof PrecheckFile>;

export const PrechecksFile = z
  .array(PrecheckFile)
  .max(MAX_PRECHECKS)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    for (const [i, p] of list.entries()) {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `two validators are named ${p.name}` });
      seen.add(p.name);
      if (p.kind === 'opa' && p.path === undefined) ctx.addIssue({ code: 'custom', path: [i, 'path'], message: 'an opa validator needs path (the document under /v1/data/)' });
      if (p.kind === 'http' && p.path !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'path'], message: 'path is for opa validators; put it in the url' });
      if (p.raiseTo !== undefined && p.onError !== 'raise') ctx.addIssue({ code: 'custom', path: [i, 'raiseTo'], message: 'raiseTo is the level onError: raise raises to; set onError: raise' });
    }
  });
