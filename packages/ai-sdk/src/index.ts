/**
 * @countersign/ai-sdk — Countersign approvals for the Vercel AI SDK (ai@6). Every export here is
 * public API.
 *
 *   const approvals = new ToolApprovals(cs, { tools: { delete_file: { riskLevel: 'high' } } });
 *   const tools = approvals.guardTools({ delete_file, read_file });
 *   await generateText({ model, tools, prompt, stopWhen: stepCountIs(5) });
 */
export { ToolApprovals, type ApprovalMode, type SettleOptions, type ToolApprovalsOptions } from './approvals.ts';
export { callKey, type ToolAlternative, type ToolApprovalSpec } from '@countersign/adapter-kit';
