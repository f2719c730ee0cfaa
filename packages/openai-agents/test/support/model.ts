/**
 * A scripted `Model` for OpenAI Agents JS (the framework's own extension point for models):
 * each model call takes the next turn of the script, and every request is kept so a test can
 * read what the model was told. No network.
 */
import { Usage, type Model, type ModelRequest, type ModelResponse } from '@openai/agents';

export type Turn = { toolCalls: { id: string; name: string; args: Record<string, unknown> }[] } | { text: string };

export class ScriptedModel implements Model {
  readonly requests: ModelRequest[] = [];
  readonly #turns: Turn[];

  constructor(turns: Turn[]) {
    this.#turns = [...turns];
  }

  get remaining(): number {
    return this.#turns.length;
  }

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    this.requests.push(request);
    const turn = this.#turns.shift();
    if (!turn) throw new Error(`the script has no turn ${this.requests.length}`);
    const output: ModelResponse['output'] =
      'text' in turn
        ? [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: turn.text }] }]
        : turn.toolCalls.map((c) => ({ type: 'function_call', callId: c.id, name: c.name, arguments: JSON.stringify(c.args), status: 'completed' }));
    return { usage: new Usage(), output, responseId: `resp-${this.requests.length}` };
  }

  /** The whole turn as one `response_done` event. */
  getStreamedResponse(request: ModelRequest): AsyncIterable<never> {
    const model = this;
    return (async function* () {
      const response = await model.getResponse(request);
      yield {
        type: 'response_done',
        response: { id: response.responseId!, usage: { inputTokens: 0, outputTokens: 0, totalTokens: 0 }, output: response.output },
      } as never;
    })();
  }
}

/** What the model was told in request `i`, as one string. */
export function told(model: ScriptedModel, i: number): string {
  return JSON.stringify(model.requests[i]?.input);
}
