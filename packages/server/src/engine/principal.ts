import type { Role } from '@countersign/core';

/** Who is calling: an agent (by API key) or an operator (by token). */
export type Principal =
  | { kind: 'agent'; agentId: string; agentName: string }
  | { kind: 'operator'; operatorId: string; name: string; roles: Role[]; groups: string[] };

export function principalLabel(p: Principal): string {
  return p.kind === 'agent' ? `agent ${p.agentName}` : `operator ${p.name}`;
}

/**
 * Whether `now` holds the same grants as `opened` (the same agent, or the same operator with the
 * same roles and groups). A long-lived stream ends when this stops holding, so a role taken away
 * reaches open streams as it reaches new calls (issue 13).
 */
export function sameGrants(opened: Principal, now: Principal | undefined): boolean {
  if (!now || now.kind !== opened.kind) return false;
  if (opened.kind === 'agent') return now.kind === 'agent' && now.agentId === opened.agentId;
  if (now.kind !== 'operator' || now.operatorId !== opened.operatorId) return false;
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
  return same(now.roles, opened.roles) && same(now.groups, opened.groups);
}
