/**
 * The policy's `screening:` section and the `POST /v1/screen` request, as zod schemas. The
 * policy loader (not this module) hooks `ScreeningPolicy` in; `resolveScreening` gives the frozen
 * config `screen()` takes.
 *
 * Default bands are SecPrompt's, read as "the score is the probability of an injection":
 * SecPrompt allows at ≥ 0.9 *confidence that the input is safe*, reviews 0.7–0.9, escalates
 * 0.3–0.7 and blocks below 0.3 — so here: allow below 0.1, review from 0.1, escalate from 0.3,
 * block from 0.7.
 *
 * @example
 * screening:
 *   channels:
 *     content:
 *       bands:
 *         - { min: 0,   action: allow,    severity: none }
 *         - { min: 0.1, action: sanitize, severity: low }
 *         - { min: 0.5, action: block,    severity: high }
 *   maxBytes: 262144
 */
import { z } from 'zod';
import { parseDuration } from '../duration.ts';
import { CHANNELS, SCREEN_ACTIONS, SEVERITIES, type Channel, type ScreenAction, type Severity } from './types.ts';

export const ScreenActionSchema = z.enum(SCREEN_ACTIONS);
export const SeveritySchema = z.enum(SEVERITIES);
export const ChannelSchema = z.enum(CHANNELS);

const Band = z.strictObject({
  /** The band starts at this score (inclusive) and runs to the next band's `min`. */
  min: z.number().min(0).max(1),
  action: ScreenActionSchema,
  severity: SeveritySchema,
});
export type ScreenBand = z.infer<typeof Band>;

const Bands = z
  .array(Band)
  .min(1)
  .max(16)
  .superRefine((bands, ctx) => {
    if (bands[0]?.min !== 0) ctx.addIssue({ code: 'custom', message: 'the first band must start at min: 0', path: [0, 'min'] });
    for (let k = 1; k < bands.length; k++) {
      if ((bands[k]?.min ?? 0) <= (bands[k - 1]?.min ?? 0)) {
        ctx.addIssue({ code: 'custom', message: 'band minimums must strictly increase', path: [k, 'min'] });
      }
    }
  });

export const DEFAULT_BANDS: readonly ScreenBand[] = Object.freeze([
  { min: 0, action: 'allow', severity: 'none' },
  { min: 0.1, action: 'review', severity: 'low' },
  { min: 0.3, action: 'escalate', severity: 'medium' },
  { min: 0.7, action: 'block', severity: 'high' },
] as const);

/**
 * What each action does on the create path (the server reads this): `route` forces a route,
 * `raiseRisk` lifts the request's risk level to at least this.
 */
const Effect = z.strictObject({
  route: z.enum(['none', 'review', 'block']),
  raiseRisk: z.enum(['low', 'medium', 'high', 'critical']).optional(),
});
export type ScreenEffect = z.infer<typeof Effect>;

const DEFAULT_EFFECTS: Record<ScreenAction, ScreenEffect> = {
  allow: { route: 'none' },
  review: { route: 'review' },
  escalate: { route: 'review', raiseRisk: 'high' },
  block: { route: 'block', raiseRisk: 'critical' },
  sanitize: { route: 'review' },
};

const ChannelConfig = z.strictObject({ bands: Bands.optional() });

export const ScreeningPolicy = z.strictObject({
  enabled: z.boolean().optional(),
  channels: z.strictObject({ user: ChannelConfig.optional(), content: ChannelConfig.optional() }).optional(),
  effects: z.strictObject(Object.fromEntries(SCREEN_ACTIONS.map((a) => [a, Effect.optional()])) as Record<ScreenAction, z.ZodOptional<typeof Effect>>).optional(),
  /** Bytes of text screened per request (UTF-16 units, summed over fields). Beyond it: `overBudget`. */
  maxBytes: z.number().int().min(1024).max(16 * 1024 * 1024).optional(),
  overBudget: ScreenActionSchema.optional(),
  /** Findings are reported for segments scoring at least this (default: the first non-allow band). */
  findingsFrom: z.number().min(0).max(1).optional(),
  sanitize: z
    .strictObject({
      mode: z.enum(['spotlight', 'datamark']).optional(),
      /** Segments scoring at least this are redacted from `defendedInput`. */
      redactFrom: z.number().min(0).max(1).optional(),
    })
    .optional(),
  /** The learning loop: who may teach the screen, how much one source weighs, what calibration aims at. */
  learning: z
    .strictObject({
      /** Roles whose screening verdicts count (default: admin, lead, manager, director). Others are recorded, never counted. */
      verdictRoles: z.array(z.enum(['admin', 'reviewer', 'lead', 'manager', 'director', 'auditor'])).max(6).optional(),
      /** The most total weight one reviewer's verdicts carry (default 25). */
      maxWeightPerSource: z.number().min(1).max(100_000).optional(),
      /** Calibration's target false-positive rate (default 0.02) and the confidence of its bound (default 0.95). */
      targetFpr: z.number().gt(0).lt(1).optional(),
      confidence: z.number().gt(0.5).lt(1).optional(),
      /** Share of auto-allowed screened items put in the random audit sample (default 0.02). */
      auditRate: z.number().min(0).max(1).optional(),
    })
    .optional(),
  /**
   * The periodic retrain from accepted verdicts (core retrain.ts). Off unless `every` is set; an
   * admin can still run one (`POST /v1/screening/retrain`). A candidate is adopted for the create
   * path only if the evaluation gate passes.
   */
  retrain: z
    .strictObject({
      /** How often: a duration of at least 1h (`24h`, `7d`). */
      every: z
        .string()
        .refine((t) => (parseDuration(t) ?? 0) >= 3_600_000, { message: 'must be a duration of at least 1h, like 24h or 7d' })
        .optional(),
      /** Accepted verdicts needed before a retrain is tried (default 50). */
      minVerdicts: z.number().int().min(1).max(100_000).optional(),
      /** How much worse than the frozen baseline any evaluation set may get (default 0.01). */
      tolerance: z.number().min(0).max(0.2).optional(),
    })
    .optional(),
});
export type ScreeningPolicy = z.infer<typeof ScreeningPolicy>;

/** The resolved, frozen config `screen()` takes. */
export interface ScreeningConfig {
  readonly enabled: boolean;
  readonly bands: Readonly<Record<Channel, readonly ScreenBand[]>>;
  readonly effects: Readonly<Record<ScreenAction, ScreenEffect>>;
  readonly maxBytes: number;
  readonly overBudget: ScreenAction;
  readonly findingsFrom: Readonly<Record<Channel, number>>;
  readonly sanitize: { readonly mode: 'spotlight' | 'datamark'; readonly redactFrom: number };
  readonly learning: {
    readonly verdictRoles: readonly string[];
    readonly maxWeightPerSource: number;
    readonly targetFpr: number;
    readonly confidence: number;
    readonly auditRate: number;
  };
  /** `everyMs` null: no periodic retrain. */
  readonly retrain: { readonly everyMs: number | null; readonly minVerdicts: number; readonly tolerance: number };
}

/** Defaults filled in, validated, frozen. Throws zod's error on a bad section (the loader reports the path). */
export function resolveScreening(section: unknown = {}): ScreeningConfig {
  const p = ScreeningPolicy.parse(section ?? {});
  const bands = {
    user: p.channels?.user?.bands ?? DEFAULT_BANDS,
    content: p.channels?.content?.bands ?? DEFAULT_BANDS,
  };
  const firstFlag = (bs: readonly ScreenBand[]): number => bs.find((b) => b.action !== 'allow')?.min ?? 1;
  const effects = { ...DEFAULT_EFFECTS } as Record<ScreenAction, ScreenEffect>;
  for (const a of SCREEN_ACTIONS) {
    const e = p.effects?.[a];
    if (e) effects[a] = e;
  }
  return deepFreeze({
    enabled: p.enabled ?? true,
    bands,
    effects,
    maxBytes: p.maxBytes ?? 256 * 1024,
    overBudget: p.overBudget ?? 'review',
    findingsFrom: { user: p.findingsFrom ?? firstFlag(bands.user), content: p.findingsFrom ?? firstFlag(bands.content) },
    sanitize: { mode: p.sanitize?.mode ?? 'spotlight', redactFrom: p.sanitize?.redactFrom ?? 0.7 },
    learning: {
      verdictRoles: p.learning?.verdictRoles ?? ['admin', 'lead', 'manager', 'director'],
      maxWeightPerSource: p.learning?.maxWeightPerSource ?? 25,
      targetFpr: p.learning?.targetFpr ?? 0.02,
      confidence: p.learning?.confidence ?? 0.95,
      auditRate: p.learning?.auditRate ?? 0.02,
    },
    retrain: {
      everyMs: p.retrain?.every !== undefined ? (parseDuration(p.retrain.every) as number) : null,
      minVerdicts: p.retrain?.minVerdicts ?? 50,
      tolerance: p.retrain?.tolerance ?? 0.01,
    },
  });
}

/** The default config: SecPrompt's bands on both channels, 256 KiB per request. */
export const DEFAULT_SCREENING: ScreeningConfig = resolveScreening({});

/** `POST /v1/screen` body: exactly one of `text` (a string) or `content` (a string or JSON value). */
export const ScreenRequest = z
  .strictObject({
    text: z.string().max(1_048_576).optional(),
    content: z.unknown().optional(),
    channel: ChannelSchema,
    context: z
      .strictObject({
        /** Spotlighting delimiter, supplied by the caller (core draws no randomness). */
        nonce: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/).optional(),
        /** Free-form: where the text came from (tool name, URL), shown to the reviewer. */
        source: z.string().max(500).optional(),
      })
      .optional(),
  })
  .refine((r) => (r.text === undefined) !== (r.content === undefined), { message: 'give exactly one of text or content' });
export type ScreenRequest = z.infer<typeof ScreenRequest>;

export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { none: 0, low: 1, medium: 2, high: 3, critical: 4 };
export const ACTION_RANK: Readonly<Record<ScreenAction, number>> = { allow: 0, sanitize: 1, review: 2, escalate: 3, block: 4 };

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
