import type { Role } from '@countersign/core';

/** Who is calling: an agent (by API key) or an operator (by token). */
export type Principal =
  | { kind: 'agent'; agentId: string; agentName: string }
  | { kind: 'operator'; operatorId: string; name: string; roles: Role[]; groups: string[] };

export function principalLabel(p: Principal): string {
  return p.kind === 'agent' ? `agent ${p.agentName}` : `operator ${p.name}`;
}
