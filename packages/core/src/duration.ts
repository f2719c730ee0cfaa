const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * Parses the policy's duration strings: `30s`, `15m`, `2h`, `7d` (and `250ms`).
 * Returns milliseconds, or `undefined` for anything else so callers can name the bad key.
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const [, amount, unit] = match;
  const ms = Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : undefined;
}

/**
 * A compact duration for people: `45s`, `4m12s`, `2h3m`, `3d4h`; a zero second unit is
 * dropped (`3m`, `2h`). Negative durations keep their sign.
 */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let rest = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(rest / 86_400);
  rest -= d * 86_400;
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  const pair = (a: number, ua: string, b: number, ub: string) => `${sign}${a}${ua}${b > 0 ? `${b}${ub}` : ''}`;
  if (d > 0) return pair(d, 'd', h, 'h');
  if (h > 0) return pair(h, 'h', m, 'm');
  if (m > 0) return pair(m, 'm', s, 's');
  return `${sign}${s}s`;
}
