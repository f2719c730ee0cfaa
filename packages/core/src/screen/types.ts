/** Shared types of the screen module: the request and response shape of `POST /v1/screen`. */

export const CHANNELS = ['user', 'content'] as const;
/** `user`: a prompt someone typed. `content`: data an agent read (tool output, page, email). */
export type Channel = (typeof CHANNELS)[number];

export const SCREEN_ACTIONS = ['allow', 'review', 'escalate', 'block', 'sanitize'] as const;
export type ScreenAction = (typeof SCREEN_ACTIONS)[number];

export const SEVERITIES = ['none', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** A half-open range of UTF-16 offsets into the screened text (for `content` given as a value: into its JSON). */
export interface Span {
  readonly start: number;
  readonly end: number;
}

export interface ScreenFinding {
  /** `injection` (a model segment), a normalisation trick (`zero-width`, `base64`, …), or a rule (`override-phrasing`, …). */
  readonly kind: string;
  readonly span: Span;
  /** Calibrated probability of the segment the finding sits in. */
  readonly score: number;
  readonly why: string;
  /** For data: the path of the string leaf, e.g. `reviews/0/review_content`. */
  readonly path?: string;
}

export interface ScreenResult {
  /** Calibrated probability that the input carries a prompt injection. */
  readonly score: number;
  readonly severity: Severity;
  readonly action: ScreenAction;
  readonly findings: readonly ScreenFinding[];
  /** Present when the action is `sanitize`: the input made safe to hand to a model. */
  readonly defendedInput?: string;
}
