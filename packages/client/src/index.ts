/**
 * @countersign/client — the agent-side SDK. Every export here is public API.
 *
 *   const cs = new Countersign({ url, apiKey });            // or Countersign.embedded()
 *   const handle = await cs.requestApproval({ action: 'isolate_host', args: { host } });
 *   const decision = await handle.decision({ timeoutMs: 60_000 });
 *   const isolate = cs.guard(isolateHost, { action: 'isolate_host' });
 */
export { Countersign, type CountersignOptions, type GatewayClientOptions, type HttpClientOptions } from './countersign.ts';
export { ApprovalHandle, type WaitOptions } from './handle.ts';
export { HttpGateway, type FetchLike, type HttpGatewayOptions, type RetryOptions } from './http.ts';
export { guardRequestBody, type Guarded, type GuardAlternative, type GuardOptions } from './guard.ts';
export { countersignCanUseTool, type CanUseTool, type CanUseToolHelperOptions, type CanUseToolOptions, type CanUseToolResult } from './claude-agent-sdk.ts';
export type { EmbeddedGateway, EmbeddedOptions, EventsOptions, StreamingGateway } from './types.ts';
export { CountersignError, isCountersignError, type ErrorCode } from '@countersign/core';
export type {
  AgentGateway,
  ApprovalRequest,
  Assessment,
  CreateRequestBody,
  Decision,
  ExecutionBody,
  RequestContext,
  RequestStatus,
} from '@countersign/core';
