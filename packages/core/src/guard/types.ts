import type { JsonObject, RiskLevel } from '../schemas.ts';

/**
 * One request as the guard sees it: a slim, time-stamped record the server reads from its
 * store. Times are epoch milliseconds; the guard never reads a clock.
 */
export interface GuardEvent {
  requestId: string;
  agentId: string;
  action: string;
  args: JsonObject;
  /** `context.value`, when the request carried an amount. */
  value?: number | undefined;
  riskLevel: RiskLevel;
  createdAt: number;
  /** For reviewed requests: who approved, and when. */
  approverId?: string | undefined;
  decidedAt?: number | undefined;
  outcome?: 'approved' | 'rejected' | undefined;
}

export type AlertType = 'velocity_abuse' | 'value_aggregation' | 'temporal_clustering' | 'approver_fatigue' | 'pattern_repetition';

export interface SlicingAlert {
  type: AlertType;
  /** 0–1: how sure the detector is. */
  confidence: number;
  description: string;
  /** What triggered it: request ids and the numbers compared. */
  evidence: { requestIds: string[]; [key: string]: unknown };
}

export interface SlicingReport {
  attackDetected: boolean;
  confidence: number;
  alerts: SlicingAlert[];
}

export interface SlicingConfig {
  /** The window the detectors judge, minutes. */
  windowMinutes: number;
  velocity: {
    /** Alert when the agent's rate is this many times its baseline … */
    factor: number;
    /** … in at least this many of the window's buckets (a single burst is not abuse). */
    sustainedBuckets: number;
    buckets: number;
    /** Requests per hour assumed when there is no baseline yet. */
    floorPerHour: number;
    /** Fewer requests than this in the window never alert. */
    minRequests: number;
  };
  aggregation: {
    /** Value limit that slicing tries to stay under, e.g. the policy's review threshold. */
    threshold: number;
    /** A value counts as "just under" from this fraction of the threshold. */
    nearFraction: number;
    minCount: number;
  };
  clustering: {
    burstSeconds: number;
    minBurst: number;
    /** Args similarity (0–1) above which two requests are "the same thing again". */
    similarity: number;
  };
  fatigue: {
    maxApprovalsPerHour: number;
    /** Approving faster than this after the request appeared is faster than a human can read. */
    minReadSeconds: number;
    minFastApprovals: number;
  };
  repetition: {
    minRepeats: number;
  };
}

export const DEFAULT_SLICING_CONFIG: SlicingConfig = Object.freeze({
  windowMinutes: 60,
  velocity: { factor: 4, sustainedBuckets: 3, buckets: 6, floorPerHour: 6, minRequests: 12 },
  aggregation: { threshold: 10_000, nearFraction: 0.8, minCount: 3 },
  clustering: { burstSeconds: 60, minBurst: 8, similarity: 0.6 },
  fatigue: { maxApprovalsPerHour: 20, minReadSeconds: 4, minFastApprovals: 3 },
  repetition: { minRepeats: 5 },
}) as SlicingConfig;
