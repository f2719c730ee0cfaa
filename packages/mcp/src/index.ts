/**
 * @countersign/mcp — Countersign where agents run. Every export here is public API.
 *
 *   const gateway = await Gateway.start({ countersign, servers: { docs: { command: 'node', args: ['docs.js'] } } });
 *   await gateway.createSession().connect(new StdioServerTransport());
 */
export { registerMcpCommands, mcpProgram } from './cli.ts';
export { Gateway, filePins, memoryPins, type GatewayOptions, type PinStore } from './gateway.ts';
export { loadGatewayConfig, parseGatewayConfig, type GatewayConfig, type ServerConfig } from './config.ts';
export type { DownstreamSource } from './downstream.ts';
export { createCountersignServer, MAX_TOOL_WAIT_SECONDS, type ServeOptions } from './serve.ts';
export { decideHook, runClaudeCodeHook, type HookOutput, type PermissionDecision } from './hook.ts';
export { startListener, type Listener, type ListenerOptions } from './listener.ts';
