/**
 * Local-time windows for rules such as "no code execution outside business hours".
 *
 * Business hours are a wall-clock notion, so a window is evaluated in its IANA time zone with
 * `Intl.DateTimeFormat` (no time-zone database of our own, works in browsers, follows DST).
 * The instant is always passed in; nothing here reads a clock.
 *
 * Semantics, chosen to be predictable rather than clever:
 * - `days` and `hours` are checked independently against the local day and local time of the
 *   instant. An overnight window `22:00-06:00` with `days: fri` matches Friday 23:00 and
 *   Friday 01:00, not Saturday 01:00.
 * - hours are half-open: `09:00-17:00` includes 09:00 and excludes 17:00. `24:00` may end a
 *   window. A window whose start is after its end wraps past midnight.
 * - day lists accept `mon-fri`, `sat,sun`, `mon-wed,fri`, ranges that wrap (`fri-mon`) and
 *   YAML lists of the same.
 */
import type { TimeWindow } from './types.ts';

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

export function parseDays(spec: string | readonly string[]): number[] | string {
  const parts = (typeof spec === 'string' ? [spec] : spec).flatMap((s) => s.split(','));
  const days = new Set<number>();
  for (const raw of parts) {
    const part = raw.trim().toLowerCase();
    const range = /^([a-z]+)\s*-\s*([a-z]+)$/.exec(part);
    const ends = range ? [range[1] ?? '', range[2] ?? ''] : [part];
    const idx = ends.map((d) => DAY_NAMES.indexOf(d.slice(0, 3) as (typeof DAY_NAMES)[number]));
    const bad = ends.find((d, i) => idx[i] === -1 || !isDayName(d));
    if (bad !== undefined) return `unknown day "${bad}": use mon, tue, wed, thu, fri, sat, sun, or ranges like mon-fri`;
    const [from, to = from] = idx as [number, number?];
    for (let d = from; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === to) break;
    }
  }
  if (days.size === 0) return 'no days given';
  return [...days].sort((a, b) => a - b);
}

function isDayName(text: string): boolean {
  const full = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
  return text.length >= 3 && full.some((f) => f.startsWith(text));
}

/** `09:00-17:00` → minutes from local midnight, or an error message. */
export function parseHours(spec: string): { from: number; to: number } | string {
  const m = /^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$/.exec(spec);
  if (!m) return 'expected hours like "09:00-17:00"';
  const from = Number(m[1]) * 60 + Number(m[2]);
  const to = Number(m[3]) * 60 + Number(m[4]);
  if (Number(m[2]) > 59 || Number(m[4]) > 59 || from >= 24 * 60 || to > 24 * 60) {
    return 'hours must be between 00:00 and 24:00';
  }
  if (from === to) return 'an empty window (start equals end) never matches';
  return { from, to };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** A formatter per zone; constructing one is slow and the set of zones in a policy is small. */
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

export interface LocalTime {
  readonly day: number;
  readonly minute: number;
  /** e.g. `Wed 17:30`, for reasons. */
  readonly text: string;
}

export function localTime(now: Date, timeZone: string): LocalTime {
  const parts = formatter(timeZone).formatToParts(now);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? '';
  const weekday = get('weekday');
  const hour = Number(get('hour')) % 24;
  const minute = Number(get('minute'));
  const day = DAY_NAMES.indexOf(weekday.slice(0, 3).toLowerCase() as (typeof DAY_NAMES)[number]);
  return {
    day,
    minute: hour * 60 + minute,
    text: `${weekday} ${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`,
  };
}

export function inWindow(window: TimeWindow, now: Date): { inside: boolean; local: LocalTime } {
  const local = localTime(now, window.timeZone);
  const dayOk = window.days === undefined || window.days.includes(local.day);
  const h = window.hours;
  const hourOk =
    h === undefined || (h.from < h.to ? local.minute >= h.from && local.minute < h.to : local.minute >= h.from || local.minute < h.to);
  return { inside: dayOk && hourOk, local };
}
