/**
 * Numbers as people read them, formatted in one place so the CLI, the dashboard and the channels
 * never show the same value two ways. A subpath export (`@countersign/core/format`) so the
 * dashboard can use it without bundling the rest of core.
 */

/**
 * A risk score (0–1) with two decimals, halves rounded up as the number is written in decimal:
 * `0.565` is `0.57` (`(0.565).toFixed(2)` gives `0.56`, because the double is 0.56499…).
 * Not a number: `-`.
 */
export function formatScore(score: number | null | undefined): string {
  if (typeof score !== 'number' || !Number.isFinite(score)) return '-';
  const cents = Math.round(Number((score * 100).toPrecision(12)));
  return (cents / 100).toFixed(2);
}
