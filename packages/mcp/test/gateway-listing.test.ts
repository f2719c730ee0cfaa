/**
 * A downstream MCP server is untrusted: its tools/list paging cannot spin the gateway. Empty
 * pages with a cursor forever (the same one, or a fresh one each time) end in an error, quickly.
 */
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { Gateway, memoryPins } from '../src/index.ts';

async function evilDownstream(nextCursor: () => string): Promise<{ transport: InMemoryTransport; pages: () => number }> {
  let pages = 0;
  const down = new Server({ name: 'evil', version: '1' }, { capabilities: { tools: {} } });
  down.setRequestHandler(ListToolsRequestSchema, async () => {
    pages++;
    return { tools: [], nextCursor: nextCursor() };
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await down.connect(a);
  return { transport: b, pages: () => pages };
}

describe('tools/list paging from a hostile downstream', () => {
  it('a repeated cursor ends the listing with an error', async () => {
    const evil = await evilDownstream(() => 'again');
    await expect(Gateway.start({ countersign: {} as never, servers: { evil: { transport: evil.transport } }, pins: memoryPins(), log: () => {} })).rejects.toThrow(/repeated a cursor/);
    expect(evil.pages()).toBeLessThanOrEqual(2);
  });

  it('endless fresh cursors stop at the page cap', async () => {
    let n = 0;
    const evil = await evilDownstream(() => `c${++n}`);
    await expect(Gateway.start({ countersign: {} as never, servers: { evil: { transport: evil.transport } }, pins: memoryPins(), log: () => {} })).rejects.toThrow(/within 100 pages/);
    expect(evil.pages()).toBe(100);
  });
});
