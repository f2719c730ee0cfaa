import type { RequestStatus, RiskLevel } from '@countersign/core';
import { formatScore } from '@countersign/core/format';

export function RiskBadge({ level, score }: { level: RiskLevel; score?: number }) {
  return (
    <span className={`badge risk-${level}`}>
      {level}
      {score !== undefined && <span className="badge-score"> {formatScore(score)}</span>}
    </span>
  );
}

export function StatusBadge({ status }: { status: RequestStatus }) {
  return <span className={`badge status-${status}`}>{status.replace('_', ' ')}</span>;
}
