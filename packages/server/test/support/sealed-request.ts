/** A request body whose every sealed column (args, description, evidence, alternatives) carries `marker`. */
import { CreateRequestBody } from '@countersign/core';

export function markedRequest(marker: string, extra: Record<string, unknown> = {}): ReturnType<typeof CreateRequestBody.parse> {
  return CreateRequestBody.parse({
    action: 'isolate_host',
    args: { host: `${marker}-args` },
    confidence: 0.8,
    description: `${marker}-description`,
    context: { evidence: [{ type: 'log', summary: `${marker}-evidence` }] },
    alternatives: [{ name: 'watch', action: 'monitor_host', args: { host: `${marker}-alt` } }],
    ...extra,
  });
}
