import type { RequestStatus, RiskLevel } from '@countersign/core';

export function RiskBadge({ level, score }: { level: RiskLevel; score?: number }) {
  return (
    <span className={`badge risk-${level}`}>
      {level}
      {score !== undefined && <span className="badge-score"> {score.toFixed(2)}</span>}
    </span>
  );
}

export function StatusBadge({ status }: { status: RequestStatus }) {
  return <span className={`badge status-${status}`}>{status.replace('_', ' ')}</span>;
}
