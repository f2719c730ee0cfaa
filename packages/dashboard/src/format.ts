import { formatScore } from '@countersign/core/format';
/** Small formatting helpers for system-computed values (never for agent text). */

export function duration(seconds: number): string {
  const s = Math.round(Math.abs(seconds));
  const sign = seconds < 0 && s > 0 ? '−' : '';
  if (s < 60) return `${sign}${s}s`;
  if (s < 3600) return `${sign}${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${sign}${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${sign}${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** "4m 10s left" / "overdue by 2m 03s" / "no SLA". */
export function slaLeft(due: number | null, now: number): { text: string; overdue: boolean; soon: boolean } {
  if (due === null) return { text: 'no SLA', overdue: false, soon: false };
  const left = (due - now) / 1000;
  if (left < 0) return { text: `overdue by ${duration(-left)}`, overdue: true, soon: true };
  return { text: `${duration(left)} left`, overdue: false, soon: left < 120 };
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

export function percent(value: number | null | undefined, digits = 0): string {
  return value === null || value === undefined ? '—' : `${(value * 100).toFixed(digits)}%`;
}

/** A risk score, as the CLI prints it (one function for both: core's formatScore). */
export function score(value: number): string {
  return formatScore(value);
}
