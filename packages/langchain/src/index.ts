/**
 * @countersign/langchain — Countersign approvals for LangChain agents and LangGraph. Every export
 * here is public API.
 *
 *   const approvals = new LangChainApprovals(cs, { tools: { delete_file: { riskLevel: 'high' } } });
 *   const agent = createAgent({ model, tools: [deleteFile], middleware: [approvals.middleware()] });
 */
export {
  LangChainApprovals,
  approvalInterrupts,
  approveDurably,
  type ApprovalInterrupt,
  type ApprovalMode,
  type InterruptSource,
  type LangChainApprovalsOptions,
  type LangChainToolSpec,
} from './approvals.ts';
export { callKey } from '@countersign/adapter-kit';
