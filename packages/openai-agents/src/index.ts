/**
 * @countersign/openai-agents — Countersign approvals for OpenAI Agents JS. Every export here is
 * public API.
 *
 *   const approvals = new AgentApprovals(cs, { tools: { delete_file: { riskLevel: 'high' } } });
 *   const agent = new Agent({ name: 'ops', tools: approvals.guardTools([deleteFile]) });
 *   let result = await run(agent, 'clean up');
 *   while (result.interruptions.length > 0) {
 *     await approvals.settle(result.state, { timeoutMs: 60_000 });
 *     result = await run(agent, result.state);
 *   }
 */
export { AgentApprovals, type AgentApprovalsOptions, type ApprovalMode, type SettleOptions, type Settlement } from './approvals.ts';
export { callKey, type ToolAlternative, type ToolApprovalSpec } from '@countersign/adapter-kit';
