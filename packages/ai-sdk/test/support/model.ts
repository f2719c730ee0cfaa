/**
 * A scripted model on the AI SDK's own `MockLanguageModelV3` (ai/test): each model call takes
 * the next turn of the script, for `generateText` (doGenerate) and `streamText` (doStream) alike,
 * and every prompt the SDK sent is kept so a test can read what the model was told.
 */
import { MockLanguageModelV3 } from 'ai/test';

export interface ToolCallTurn {
  toolCalls: { id: string; name: string; input: Record<string, unknown> }[];
}
export interface TextTurn {
  text: string;
}
export type Turn = ToolCallTurn | TextTurn;

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
};

export function scriptedModel(script: Turn[]) {
  const turns = [...script];
  const prompts: unknown[] = [];
  const next = (prompt: unknown): Turn => {
    prompts.push(prompt);
    const turn = turns.shift();
    if (!turn) throw new Error(`the script has no turn ${prompts.length}`);
    return turn;
  };
  const model = new MockLanguageModelV3({
    doGenerate: async (options) => {
      const turn = next(options.prompt);
      if ('text' in turn) {
        return { content: [{ type: 'text', text: turn.text }], finishReason: { unified: 'stop', raw: undefined }, usage, warnings: [] };
      }
      return {
        content: turn.toolCalls.map((c) => ({ type: 'tool-call' as const, toolCallId: c.id, toolName: c.name, input: JSON.stringify(c.input) })),
        finishReason: { unified: 'tool-calls', raw: undefined },
        usage,
        warnings: [],
      };
    },
    doStream: async (options) => {
      const turn = next(options.prompt);
      const parts: unknown[] = [{ type: 'stream-start', warnings: [] }];
      if ('text' in turn) {
        parts.push({ type: 'text-start', id: 't' }, { type: 'text-delta', id: 't', delta: turn.text }, { type: 'text-end', id: 't' });
        parts.push({ type: 'finish', finishReason: { unified: 'stop', raw: undefined }, usage });
      } else {
        for (const c of turn.toolCalls) parts.push({ type: 'tool-call', toolCallId: c.id, toolName: c.name, input: JSON.stringify(c.input) });
        parts.push({ type: 'finish', finishReason: { unified: 'tool-calls', raw: undefined }, usage });
      }
      return {
        stream: new ReadableStream({
          start(controller) {
            for (const part of parts) controller.enqueue(part as never);
            controller.close();
          },
        }),
      };
    },
  });
  return { model, prompts, remaining: () => turns.length };
}

/** Everything the model was told, as one string (to look for a reviewer's reason in it). */
export function told(prompt: unknown): string {
  return JSON.stringify(prompt);
}
