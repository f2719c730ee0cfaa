/**
 * Agent-supplied JSON (args, context extras) as a readable tree. Keys and string values are
 * agent text too, so both go through SafeText. Deep levels start folded. Long arrays and objects
 * with many keys show their first entries and grow a page at a time: an agent that sends
 * 100,000 keys must not freeze the reviewer's tab (rendering is what costs, not the data).
 */
import { useState } from 'react';
import { SafeText } from './SafeText.tsx';

/** Entries rendered at first, and added by each "more" click. */
export const PAGE = 50;
const GROW = 200;

export function JsonTree({ value, depth = 0, label }: { value: unknown; depth?: number; label?: string }) {
  if (value === null) return <span className="j-null">null</span>;
  if (typeof value === 'boolean') return <span className="j-bool">{String(value)}</span>;
  if (typeof value === 'number') return <span className="j-num">{String(value)}</span>;
  if (typeof value === 'string') {
    return (
      <span className="j-str">
        <span className="j-quote" aria-hidden="true">“</span>
        <SafeText text={value} max={300} maxLines={8} />
        <span className="j-quote" aria-hidden="true">”</span>
      </span>
    );
  }
  if (Array.isArray(value)) return <JsonArray items={value} depth={depth} />;
  if (typeof value === 'object') return <JsonObject value={value as Record<string, unknown>} depth={depth} label={label} />;
  return <span className="j-other">{String(value)}</span>;
}

function Folded({ summary, depth, children }: { summary: string; depth: number; children: () => React.ReactNode }) {
  const [open, setOpen] = useState(depth < 3);
  return (
    <span className="j-fold">
      <button type="button" className="link-button j-toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
        {open ? '▾' : '▸'} {summary}
      </button>
      {open && children()}
    </span>
  );
}

/** "… 99,950 more keys [show 200 more]": one page at a time, never everything at once. */
function More({ left, noun, onMore }: { left: number; noun: string; onMore: () => void }) {
  return (
    <>
      <span className="muted">
        … {left.toLocaleString('en-US')} more {noun}
        {left === 1 ? '' : 's'}
      </span>{' '}
      <button type="button" className="link-button" onClick={onMore}>
        show {Math.min(GROW, left)} more
      </button>
    </>
  );
}

function JsonArray({ items, depth }: { items: unknown[]; depth: number }) {
  const [limit, setLimit] = useState(PAGE);
  if (items.length === 0) return <span className="j-empty">[ ]</span>;
  const shown = items.slice(0, limit);
  return (
    <Folded summary={`${items.length.toLocaleString('en-US')} item${items.length === 1 ? '' : 's'}`} depth={depth}>
      {() => (
        <ol className="j-arr" start={0}>
          {shown.map((item, i) => (
            <li key={i}>
              <JsonTree value={item} depth={depth + 1} />
            </li>
          ))}
          {items.length > limit && (
            <li className="j-more">
              <More left={items.length - limit} noun="item" onMore={() => setLimit(limit + GROW)} />
            </li>
          )}
        </ol>
      )}
    </Folded>
  );
}

/** Only the keys shown are listed (a for-in stops early), so a huge object costs what is on screen. */
function firstEntries(value: Record<string, unknown>, limit: number): { entries: Array<[string, unknown]>; total: number } {
  const entries: Array<[string, unknown]> = [];
  let total = 0;
  for (const key in value) {
    if (!Object.prototype.hasOwnProperty.call(value, key)) continue;
    if (total < limit) entries.push([key, value[key]]);
    total++;
  }
  return { entries, total };
}

function JsonObject({ value, depth, label }: { value: Record<string, unknown>; depth: number; label?: string | undefined }) {
  const [limit, setLimit] = useState(PAGE);
  const { entries, total } = firstEntries(value, limit);
  if (total === 0) return <span className="j-empty">{'{ }'}</span>;
  const body = () => (
    <dl className="j-obj" aria-label={label}>
      {entries.map(([key, v]) => (
        <div className="j-row" key={key}>
          <dt>
            <SafeText text={key} max={120} inline />
          </dt>
          <dd>
            <JsonTree value={v} depth={depth + 1} />
          </dd>
        </div>
      ))}
      {total > limit && (
        <div className="j-row j-more" data-testid="more-keys">
          <dt>
            <More left={total - limit} noun="key" onMore={() => setLimit(limit + GROW)} />
          </dt>
          <dd />
        </div>
      )}
    </dl>
  );
  if (depth === 0) return body();
  return (
    <Folded summary={`${total.toLocaleString('en-US')} key${total === 1 ? '' : 's'}`} depth={depth}>
      {body}
    </Folded>
  );
}
