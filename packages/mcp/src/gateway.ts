/**
 * The MCP gating gateway. It sits between an MCP client (the agent) and downstream MCP servers:
 * it lists their tools as `server__tool`, and forwards a `tools/call` only after Countersign
 * approved it, with the approved (possibly modified) args, exactly once.
 *
 * Roles: `Gateway` owns the downstream connections, the tool registry and the pins (shared by
 * all client sessions); `createSession()` makes one MCP `Server` per client session, whose call
 * slots decide which Countersign request a call waits on. The rules themselves are plan.ts.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { ApprovalHandle, Countersign } from '@countersign/client';
import { CountersignError, canonicalJson, type Decision, type JsonObject } from '@countersign/core';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { connectDownstream, GATEWAY_INFO, type DownstreamSource } from './downstream.ts';
import {
  TOOL_CHANGE_ACTION,
  approvesToolChange,
  callIdentity,
  definitionHash,
  idempotencyKey,
  namespacedName,
  pinVerdict,
  refusalText,
  requestBody,
  runPlan,
  toolChangeArgs,
  type ToolAnnotations,
} from './plan.ts';

/** Bounds on one downstream's tools/list paging (see refresh). */
const MAX_LIST_PAGES = 100;
const LIST_TIMEOUT_MS = 10_000;

/** Where pins are kept. The file store writes atomically (temp file + rename). */
export interface PinStore {
  load(): Record<string, string>;
  save(pins: Record<string, string>): void;
}

export function memoryPins(initial: Record<string, string> = {}): PinStore {
  let pins = { ...initial };
  return { load: () => ({ ...pins }), save: (next) => void (pins = { ...next }) };
}

export function filePins(path: string): PinStore {
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
        throw err;
      }
      const parsed = JSON.parse(text) as { pins?: Record<string, string> };
      return { ...(parsed.pins ?? {}) };
    },
    save(pins) {
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ version: 1, pins }, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, path);
    },
  };
}

export interface GatewayOptions {
  countersign: Countersign;
  servers: Readonly<Record<string, DownstreamSource>>;
  /** Longest wait inside one call before answering "pending" (s). Default 50, below the usual 60 s client timeout. */
  waitSeconds?: number | undefined;
  /** Progress notification interval while waiting (s). Default 5. */
  progressIntervalSeconds?: number | undefined;
  pins?: PinStore | undefined;
  log?: ((line: string) => void) | undefined;
  /** Tool-change reviews open at once (default {@link MAX_TOOL_CHANGE_REVIEWS}). */
  maxToolChangeReviews?: number | undefined;
  /** Calls waiting for a decision per client session (default {@link MAX_OPEN_CALLS_PER_SESSION}). */
  maxOpenCallsPerSession?: number | undefined;
}

interface Entry {
  name: string;
  server: string;
  tool: Tool;
  hash: string;
  state: 'listed' | 'held';
  pinned?: string;
  changeRequestId?: string;
}

/**
 * Admin reviews of changed definitions open at once, over all tools. A downstream that changes
 * its definitions on every listing would otherwise file one high-risk request per change and
 * bury the reviewers' queue; past the bound a changed tool is still held (never listed or run),
 * just not asked about until a review closes.
 */
export const MAX_TOOL_CHANGE_REVIEWS = 16;
/** Calls one client session may have waiting for a decision (parked or waiting) at once. */
export const MAX_OPEN_CALLS_PER_SESSION = 256;
/**
 * How long a client's tools/list waits for the downstreams to be re-read. Past it the listing
 * answers with what each slow downstream last listed: safe, because a call re-reads its
 * downstream's definition before it runs and refuses a changed one.
 */
const LIST_WAIT_MS = 3_000;

interface Slot {
  index: number;
  state: 'waiting' | 'parked' | 'closed';
  handle?: ApprovalHandle;
}

interface Downstream {
  name: string;
  source: DownstreamSource;
  client: Client;
}

const text = (t: string) => [{ type: 'text' as const, text: t }];
const errorResult = (message: string, structured?: JsonObject): CallToolResult => ({
  content: text(message),
  isError: true,
  ...(structured ? { structuredContent: structured } : {}),
});

export class Gateway {
  readonly #cs: Countersign;
  readonly #downstreams = new Map<string, Downstream>();
  readonly #entries = new Map<string, Entry>();
  readonly #pins: PinStore;
  #pinned: Record<string, string>;
  readonly #sessions = new Set<Server>();
  readonly #waitMs: number;
  readonly #progressMs: number;
  readonly #log: (line: string) => void;
  readonly #closing = new AbortController();
  /** Open tool-change reviews: tool name → the hash under review and how to stop watching it. */
  readonly #maxReviews: number;
  readonly #maxOpenCalls: number;
  readonly #watching = new Map<string, { hash: string; stop: AbortController }>();
  /** One listing in flight per downstream; a refresh asked for meanwhile runs once after it. */
  readonly #refreshing = new Map<string, { running: Promise<void>; again?: Promise<void> }>();
  readonly #reports = new Set<Promise<void>>();

  private constructor(options: GatewayOptions) {
    this.#cs = options.countersign;
    this.#pins = options.pins ?? memoryPins();
    this.#pinned = this.#pins.load();
    this.#waitMs = Math.max(1, options.waitSeconds ?? 50) * 1000;
    this.#progressMs = Math.max(0.2, options.progressIntervalSeconds ?? 5) * 1000;
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#maxReviews = options.maxToolChangeReviews ?? MAX_TOOL_CHANGE_REVIEWS;
    this.#maxOpenCalls = options.maxOpenCallsPerSession ?? MAX_OPEN_CALLS_PER_SESSION;
  }

  /** Connects every downstream and reads its tools. A downstream that fails to connect stops the start (fail closed, clear error). */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const gateway = new Gateway(options);
    try {
      for (const [name, source] of Object.entries(options.servers)) {
        let client: Client;
        try {
          client = await connectDownstream(name, source, gateway.#log);
        } catch (err) {
          throw new CountersignError('VALIDATION_FAILED', `cannot connect to downstream MCP server "${name}": ${(err as Error).message}`);
        }
        gateway.#downstreams.set(name, { name, source, client });
        client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
          gateway.refresh(name).catch((err: unknown) => gateway.#log(`countersign-mcp: re-listing ${name} failed: ${(err as Error).message}`));
        });
        await gateway.refresh(name);
      }
    } catch (err) {
      await gateway.close();
      throw err;
    }
    return gateway;
  }

  /** The registry's view, for tests and `--json` start-up output. */
  tools(): Array<{ name: string; state: 'listed' | 'held'; hash: string; changeRequestId?: string }> {
    return [...this.#entries.values()].map((e) => ({
      name: e.name,
      state: e.state,
      hash: e.hash,
      ...(e.changeRequestId ? { changeRequestId: e.changeRequestId } : {}),
    }));
  }

  /**
   * Re-reads one downstream's tools and re-judges each against its pin. A changed definition
   * is held (dropped from the listing) and an `mcp.tool_change` request is filed for an admin.
   */
  refresh(serverName: string): Promise<void> {
    const current = this.#refreshing.get(serverName);
    if (!current) {
      const running = this.#list(serverName).finally(() => {
        const state = this.#refreshing.get(serverName);
        if (state?.running === running) {
          if (state.again) this.#refreshing.set(serverName, { running: state.again });
          else this.#refreshing.delete(serverName);
        }
      });
      this.#refreshing.set(serverName, { running });
      return running;
    }
    // A listing is in flight and may have started before the change the caller wants seen:
    // run one more after it (shared by every caller meanwhile), never two at once.
    current.again ??= current.running.catch(() => {}).then(() => this.#list(serverName)).finally(() => {
      if (this.#refreshing.get(serverName)?.running === current.again) this.#refreshing.delete(serverName);
    });
    return current.again;
  }

  /** Lists one downstream's tools now (see {@link refresh}). */
  async #list(serverName: string): Promise<void> {
    const ds = this.#downstreams.get(serverName);
    if (!ds) return;
    // A downstream server is untrusted: its paging is bounded in pages, tools, repeats and time,
    // so one that answers empty pages with a fresh cursor forever cannot spin the gateway.
    const tools: Tool[] = [];
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let pages = 0; ; pages++) {
      if (pages >= MAX_LIST_PAGES) throw new Error(`${serverName}: tools/list did not end within ${MAX_LIST_PAGES} pages`);
      const page = await ds.client.listTools(cursor ? { cursor } : {}, { timeout: LIST_TIMEOUT_MS });
      tools.push(...page.tools);
      cursor = page.nextCursor;
      if (!cursor || tools.length >= 10_000) break;
      if (seen.has(cursor)) throw new Error(`${serverName}: tools/list repeated a cursor`);
      seen.add(cursor);
    }
    const before = this.#signature();
    for (const [name, e] of this.#entries) if (e.server === serverName) this.#entries.delete(name);
    let pinsChanged = false;
    for (const tool of tools) {
      const name = namespacedName(serverName, tool.name);
      if (name === null) {
        this.#log(`countersign-mcp: not listing ${serverName} tool ${JSON.stringify(tool.name).slice(0, 80)}: its name cannot be a Countersign action`);
        continue;
      }
      if (this.#entries.has(name)) {
        this.#log(`countersign-mcp: ${serverName} lists ${tool.name} twice; keeping the first`);
        continue;
      }
      const hash = definitionHash(tool);
      const verdict = pinVerdict(this.#pinned[name], hash);
      if (verdict.state === 'listed') {
        if (verdict.newPin) {
          this.#pinned[name] = hash;
          pinsChanged = true;
        }
        this.#entries.set(name, { name, server: serverName, tool, hash, state: 'listed' });
      } else {
        const entry: Entry = { name, server: serverName, tool, hash, state: 'held', pinned: verdict.pinned };
        this.#entries.set(name, entry);
        this.#log(`countersign-mcp: ${name} changed its definition (pinned ${verdict.pinned.slice(0, 12)}, now ${hash.slice(0, 12)}); held for review`);
        void this.#askToolChange(entry);
      }
    }
    if (pinsChanged) this.#pins.save(this.#pinned);
    if (this.#signature() !== before) this.#notifyListChanged();
  }

  /** Files (or re-attaches to) the admin review of a changed definition and re-lists the tool once it is approved. */
  async #askToolChange(entry: Entry): Promise<void> {
    const open = this.#watching.get(entry.name);
    if (open?.hash === entry.hash) return;
    if (open) open.stop.abort(); // a newer definition replaces the one under review: that one can never be listed now
    else if (this.#watching.size >= this.#maxReviews) {
      this.#log(`countersign-mcp: ${entry.name} stays held without a review: ${this.#maxReviews} tool-change reviews are already open`);
      return;
    }
    const stop = new AbortController();
    this.#watching.set(entry.name, { hash: entry.hash, stop });
    const signal = AbortSignal.any([this.#closing.signal, stop.signal]);
    const args = toolChangeArgs(entry.name, entry.pinned!, entry.hash, entry.tool as unknown as Parameters<typeof toolChangeArgs>[3]);
    try {
      const handle = await this.#cs.requestApproval({
        action: TOOL_CHANGE_ACTION,
        args,
        description: `The downstream MCP server "${entry.server}" changed the definition of its tool "${entry.tool.name}" after it was pinned. Approve only if the new definition (args.definition) is acceptable; until then the gateway does not list or run it.`,
        riskLevel: 'high',
        idempotencyKey: `mcp-tool-change:${entry.name}:${entry.hash.slice(0, 40)}`,
      });
      const current = this.#entries.get(entry.name);
      if (current && current.hash === entry.hash) current.changeRequestId = handle.id;
      if (canonicalJson(handle.request.args) !== canonicalJson(args)) {
        this.#log(`countersign-mcp: tool-change request ${handle.id} does not carry the gateway's args; ignoring it`);
        return;
      }
      while (!handle.decided && !signal.aborted) {
        try {
          await handle.wait({ timeoutMs: 60 * 60_000, signal });
        } catch (err) {
          if (stop.signal.aborted && !this.#closing.signal.aborted) {
            await handle.cancel('the downstream changed this tool again; a newer definition is under review').catch(() => {});
            return;
          }
          if (signal.aborted) return;
          if (!(err instanceof CountersignError && err.code === 'WAIT_TIMEOUT')) throw err;
        }
      }
      if (stop.signal.aborted && !this.#closing.signal.aborted && !handle.decided) {
        await handle.cancel('the downstream changed this tool again; a newer definition is under review').catch(() => {});
        return;
      }
      const decision = handle.request.decision;
      if (!decision || !approvesToolChange(decision, args)) {
        this.#log(`countersign-mcp: ${entry.name}'s new definition was not approved (request ${handle.id}); it stays held`);
        return;
      }
      await handle.checkReceipt(decision, { action: TOOL_CHANGE_ACTION, args });
      // Claimed once before the pin is written: a replayed or expired approval pins nothing.
      await handle.claim(decision);
      this.#pinned[entry.name] = entry.hash;
      this.#pins.save(this.#pinned);
      // Never swallowed silently: a refused report leaves the request `executing`, and the operator should know.
      await handle
        .reportExecution({ status: 'succeeded', result: { pinned: entry.hash } })
        .catch((err: unknown) => this.#log(`countersign-mcp: reporting the pin of ${entry.name} (request ${handle.id}) failed: ${(err as Error).message}`));
      const now = this.#entries.get(entry.name);
      if (now && now.hash === entry.hash && now.state === 'held') {
        now.state = 'listed';
        delete now.pinned;
        this.#notifyListChanged();
      }
    } catch (err) {
      if (!this.#closing.signal.aborted) this.#log(`countersign-mcp: tool-change review for ${entry.name} failed: ${(err as Error).message}`);
    } finally {
      if (this.#watching.get(entry.name)?.stop === stop) this.#watching.delete(entry.name);
    }
  }

  #signature(): string {
    return [...this.#entries.values()]
      .filter((e) => e.state === 'listed')
      .map((e) => `${e.name}:${e.hash}`)
      .sort()
      .join(',');
  }

  #notifyListChanged(): void {
    for (const session of this.#sessions) session.sendToolListChanged().catch(() => {});
  }

  /** The listing a client sees: listed tools only, namespaced, annotations passed through as hints. */
  listing(): Tool[] {
    const out: Tool[] = [];
    for (const e of this.#entries.values()) {
      if (e.state !== 'listed') continue;
      // outputSchema is not advertised: a "pending" answer cannot conform to the downstream's
      // schema, and clients reject non-error results that do not. structuredContent still passes.
      const { outputSchema: _dropped, name: _name, ...rest } = e.tool;
      out.push({
        ...rest,
        name: e.name,
        description: `[${e.server}] ${e.tool.description ?? ''}`.trimEnd(),
      });
    }
    return out;
  }

  /**
   * One MCP server for one client session. `sessionId` keys the session's call slots; stdio
   * has no session id, so a random one is made (a restarted gateway never re-attaches to an
   * earlier process's requests, whose claims it cannot know).
   */
  createSession(sessionId: string = randomUUID()): Server {
    const server = new Server(GATEWAY_INFO, {
      capabilities: { tools: { listChanged: true } },
      instructions:
        'Every tool call here is checked by Countersign first. A call may answer "pending, request …": nothing ran; call the same tool with the same arguments again to keep waiting.',
    });
    // Call slots by call identity. Decided slots are dropped once their call returns, so a long
    // session keeps only what is still waiting; indexes come from one counter, so a dropped
    // slot's idempotency key is never used again.
    const slots = new Map<string, Slot[]>();
    let nextIndex = 0;
    const openCalls = () => {
      let n = 0;
      for (const list of slots.values()) n += list.length;
      return n;
    };
    server.setRequestHandler(ListToolsRequestSchema, async () => {
      // Each downstream is re-read on its own, at once: a slow or failing one delays or drops
      // only its own tools (their entries stay as last listed), never the others'.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(
          [...this.#downstreams.keys()].map((name) => this.refresh(name).catch((err: unknown) => this.#log(`countersign-mcp: re-listing ${name} failed: ${(err as Error).message}`))),
        ),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, LIST_WAIT_MS))),
      ]).finally(() => clearTimeout(timer));
      return { tools: this.listing() };
    });
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const name = request.params.name;
      const args = (request.params.arguments ?? {}) as JsonObject;
      const progressToken = request.params._meta?.progressToken;
      let identityUsed: string | undefined;
      const result = await this.#call(name, args, {
        slotsFor: (identity) => {
          identityUsed = identity;
          let list = slots.get(identity);
          if (!list) slots.set(identity, (list = []));
          return list;
        },
        nextIndex: () => nextIndex++,
        atCapacity: () => openCalls() >= this.#maxOpenCalls,
        sessionId,
        signal: extra.signal,
        progress:
          progressToken === undefined
            ? undefined
            : (progress, message) =>
                extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, message } }).catch(() => {}),
      });
      if (identityUsed !== undefined) {
        const list = slots.get(identityUsed) ?? [];
        for (let i = list.length - 1; i >= 0; i--) if (list[i]!.state === 'closed') list.splice(i, 1);
        if (list.length === 0) slots.delete(identityUsed);
      }
      return result;
    });
    server.onclose = () => this.#sessions.delete(server);
    this.#sessions.add(server);
    return server;
  }

  async #call(
    name: string,
    args: JsonObject,
    ctx: {
      sessionId: string;
      slotsFor: (identity: string) => Slot[];
      nextIndex: () => number;
      atCapacity: () => boolean;
      signal: AbortSignal;
      progress: ((progress: number, message: string) => Promise<void>) | undefined;
    },
  ): Promise<CallToolResult> {
    const entry = this.#entries.get(name);
    if (!entry) return errorResult(`unknown tool ${name}`);
    if (entry.state === 'held') {
      return errorResult(
        `${name} is held: its definition changed after it was pinned, and an admin must approve the new one${entry.changeRequestId ? ` (request ${entry.changeRequestId})` : ''}. Nothing ran.`,
      );
    }
    if (args === null || typeof args !== 'object' || Array.isArray(args)) return errorResult('tool arguments must be an object');
    const ds = this.#downstreams.get(entry.server)!;
    const hashAtRequest = entry.hash;
    const identity = callIdentity(ctx.sessionId, entry.server, entry.tool.name, args);
    const list = ctx.slotsFor(identity);

    // Re-attach to a parked request (an earlier call that answered "pending"); otherwise take a
    // new slot. Only parked slots are offered: never one another call is waiting on, and never
    // one whose approval was claimed, so no two calls ever share one approval.
    let slot = list.find((s) => s.state === 'parked');
    if (slot) slot.state = 'waiting';
    else if (ctx.atCapacity()) {
      return errorResult(`this session already has ${this.#maxOpenCalls} calls waiting for decisions; wait for some to be decided before asking for more. Nothing ran.`);
    } else list.push((slot = { index: ctx.nextIndex(), state: 'waiting' }));
    const claimed = slot;

    let handle: ApprovalHandle;
    try {
      if (claimed.handle) {
        handle = claimed.handle;
      } else {
        const trust = ds.source;
        const body = requestBody({
          action: name,
          server: entry.server,
          tool: entry.tool.name,
          args,
          annotations: entry.tool.annotations as ToolAnnotations | undefined,
          definitionHash: entry.hash,
          trust: { trusted: trust.trusted === true, readOnlyConfidence: trust.readOnlyConfidence ?? 0.95 },
          hints: trust.tools?.[entry.tool.name],
          idempotencyKey: idempotencyKey(identity, claimed.index),
        });
        handle = await this.#cs.requestApproval(body);
        if (handle.replayed && handle.status !== 'pending') {
          // Another life of this session key (cannot happen with random session ids, but a
          // decided request found by key may have been run already): never run it again.
          claimed.state = 'closed';
          return errorResult(`request ${handle.id} for this call was already decided (${handle.status}); call again to ask anew. Nothing ran.`);
        }
        claimed.handle = handle;
      }
    } catch (err) {
      claimed.state = 'closed';
      return errorResult(`Countersign refused or could not file the request for ${name}: ${(err as Error).message}. Nothing ran.`);
    }

    // Wait, in progress-sized chunks, up to the cap.
    const deadline = Date.now() + this.#waitMs;
    let ticks = 0;
    try {
      if (handle.status === 'pending') await ctx.progress?.(ticks, `waiting for approval of request ${handle.id}`);
      while (handle.status === 'pending') {
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        try {
          await handle.wait({ timeoutMs: Math.min(this.#progressMs, remaining), signal: ctx.signal });
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          if (!(err instanceof CountersignError && err.code === 'WAIT_TIMEOUT')) throw err;
        }
        if (handle.status === 'pending') await ctx.progress?.(++ticks, `still waiting for approval of request ${handle.id}`);
      }
    } catch (err) {
      if (ctx.signal.aborted) {
        claimed.state = 'closed';
        try {
          await handle.cancel('the MCP client cancelled the tool call');
          return errorResult(`cancelled; request ${handle.id} was withdrawn`);
        } catch (e) {
          // Most often: decided meanwhile. Say what happened; an approval that will not run is reported not run.
          this.#log(`countersign-mcp: could not cancel ${handle.id}: ${(e as Error).message}`);
          const decided = handle.request.decision ?? (await handle.refresh().then(() => handle.request.decision).catch(() => undefined));
          if (decided?.outcome === 'approved') {
            await closeNotRun(handle, decided, 'not run by the MCP gateway: cancelled by the client');
            return errorResult(`cancelled by the client; request ${handle.id} had been approved meanwhile and was reported not run. Nothing ran.`);
          }
          return errorResult(`cancelled by the client; request ${handle.id} could not be withdrawn (${decided ? decided.outcome : (e as Error).message}). Nothing ran.`);
        }
      }
      claimed.state = 'parked';
      return errorResult(`could not wait for request ${handle.id}: ${(err as Error).message}. Nothing ran; call again to keep waiting.`);
    }

    if (handle.status === 'pending') {
      claimed.state = 'parked';
      return {
        content: text(
          `Pending: request ${handle.id} (${name}) is waiting for a human decision. Nothing has run yet. Call ${name} again with the same arguments to keep waiting for this request.`,
        ),
        structuredContent: { status: 'pending', requestId: handle.id, action: name },
      };
    }

    // Decided. From here the slot is never offered again: the decision is this call's alone.
    claimed.state = 'closed';
    const decision = handle.request.decision;
    if (!decision) return errorResult(`request ${handle.id} is ${handle.status} but carries no decision. Nothing ran.`);
    if (decision.outcome !== 'approved') {
      return errorResult(refusalText(name, handle.id, decision), { status: decision.outcome, requestId: handle.id, reason: decision.reason ?? null });
    }
    const plan = runPlan(name, decision);
    const notRun = async (why: string): Promise<CallToolResult> => {
      // A cancelled caller gets nothing back; still close the record honestly.
      if (ctx.signal.aborted) why = 'cancelled by the client';
      await closeNotRun(handle, decision, `not run by the MCP gateway: ${why}`);
      return errorResult(`${name} was approved (request ${handle.id}) but not run: ${why}`);
    };
    if (!plan.run) return notRun(plan.reason);
    try {
      await handle.checkReceipt(decision, { action: name, args: plan.args });
    } catch (err) {
      return notRun((err as Error).message);
    }
    // The definition it was approved under must still be the one that runs: re-read the listing.
    try {
      await this.refresh(entry.server);
    } catch (err) {
      return notRun(`could not re-read ${entry.server}'s tools: ${(err as Error).message}`);
    }
    const now = this.#entries.get(name);
    if (!now || now.state !== 'listed' || now.hash !== hashAtRequest) {
      return notRun('the tool was removed or its definition changed after the request was filed');
    }

    // The receipt check and the re-list take time: a caller who cancelled meanwhile gets nothing run.
    if (ctx.signal.aborted) return notRun('cancelled by the client');
    // Claimed once, right before the call: a replayed, expired or foreign approval runs nothing downstream.
    try {
      await handle.claim(decision);
    } catch (err) {
      return errorResult(`${name} was approved (request ${handle.id}) but not run: the claim was refused (${(err as Error).message})`);
    }
    let result: CallToolResult;
    try {
      result = (await ds.client.callTool({ name: entry.tool.name, arguments: plan.args }, undefined, { signal: ctx.signal })) as CallToolResult;
    } catch (err) {
      await handle
        .reportExecution({ status: 'failed', error: String((err as Error).message).slice(0, 2_000) })
        .catch((e: unknown) => this.#log(`countersign-mcp: reporting the failure of ${name} (request ${handle.id}) failed: ${(e as Error).message}`));
      return errorResult(`${name} failed downstream: ${(err as Error).message}`);
    }
    const failed = result.isError === true;
    // The record is closed in the background: the agent need not wait for a second commit to
    // see its result (close() waits for reports still in flight).
    const report = handle
      .reportExecution(failed ? { status: 'failed', error: firstText(result).slice(0, 2_000) || 'the tool reported an error' } : { status: 'succeeded' })
      .then(
        () => {},
        (err: unknown) => this.#log(`countersign-mcp: could not report the execution of ${handle.id}: ${(err as Error).message}`),
      )
      .finally(() => this.#reports.delete(report));
    this.#reports.add(report);
    return result;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#reports]);
    this.#closing.abort();
    for (const session of this.#sessions) await session.close().catch(() => {});
    for (const ds of this.#downstreams.values()) await ds.client.close().catch(() => {});
    this.#downstreams.clear();
  }
}

function firstText(result: CallToolResult): string {
  for (const c of result.content ?? []) if (c.type === 'text') return c.text;
  return '';
}

/**
 * An approval the gateway decided not to run: it is claimed (so nobody can run it later with the
 * same receipt) and closed as failed, with why. Best effort: a claim the server refuses (already
 * claimed, expired, or a receipt that is not the server's) leaves the record as the server has it.
 */
async function closeNotRun(handle: ApprovalHandle, decision: Decision, why: string): Promise<void> {
  try {
    await handle.claim(decision);
    await handle.reportExecution({ status: 'failed', error: why.slice(0, 2_000) });
  } catch {
    // Nothing ran either way.
  }
}
