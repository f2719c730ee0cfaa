/**
 * Agent-supplied JSON (args, context extras) as a readable tree. Keys and string values are
 * agent text too, so both go through SafeText. Deep levels start folded; long arrays show their
 * first items with an expander.
 */
import { useState } from 'react';
import { SafeText } from './SafeText.tsx';

const ARRAY_PREVIEW = 50;

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
  if (typeof value === 'object') return <JsonObject entries={Object.entries(value as Record<string, unknown>)} depth={depth} label={label} />;
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

function JsonArray({ items, depth }: { items: unknown[]; depth: number }) {
  const [all, setAll] = useState(false);
  if (items.length === 0) return <span className="j-empty">[ ]</span>;
  const shown = all ? items : items.slice(0, ARRAY_PREVIEW);
  return (
    <Folded summary={`${items.length} item${items.length === 1 ? '' : 's'}`} depth={depth}>
      {() => (
        <ol className="j-arr" start={0}>
          {shown.map((item, i) => (
            <li key={i}>
              <JsonTree value={item} depth={depth + 1} />
            </li>
          ))}
          {!all && items.length > ARRAY_PREVIEW && (
            <li className="j-more">
              <button type="button" className="link-button" onClick={() => setAll(true)}>
                show {items.length - ARRAY_PREVIEW} more
              </button>
            </li>
          )}
        </ol>
      )}
    </Folded>
  );
}

function JsonObject({ entries, depth, label }: { entries: Array<[string, unknown]>; depth: number; label?: string | undefined }) {
  if (entries.length === 0) return <span className="j-empty">{'{ }'}</span>;
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
    </dl>
  );
  if (depth === 0) return body();
  return (
    <Folded summary={`${entries.length} key${entries.length === 1 ? '' : 's'}`} depth={depth}>
      {body}
    </Folded>
  );
}
