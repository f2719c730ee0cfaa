/**
 * The only way agent-supplied strings reach the screen: as React text nodes (never HTML, never
 * markdown, never a link), with hidden and bidi control characters replaced by visible
 * markers, isolated from the surrounding text direction, and long values cut with an expander.
 */
import { Fragment, useState, type ReactNode } from 'react';
import { segment, truncate } from '../text.ts';

export interface SafeTextProps {
  text: string;
  /** Characters shown before "show all". */
  max?: number;
  /** Lines shown before "show all" (block mode). */
  maxLines?: number;
  /** One line: newlines become visible ⏎ markers (table cells, titles). */
  inline?: boolean;
  /** Inside a button or link: cut without an expander (no control inside a control). */
  noExpand?: boolean;
}

function renderSegments(text: string, inline: boolean): ReactNode[] {
  const out: ReactNode[] = [];
  segment(text).forEach((s, i) => {
    if (s.kind === 'hidden') {
      out.push(
        <span key={i} className="cp" title={`hidden character ${s.label}`} data-hidden-char={s.label}>
          ⟨{s.label}⟩
        </span>,
      );
    } else if (inline && s.text.includes('\n')) {
      s.text.split('\n').forEach((part, j, parts) => {
        out.push(<Fragment key={`${i}.${j}`}>{part}</Fragment>);
        if (j < parts.length - 1) out.push(<span key={`${i}.${j}.nl`} className="cp nl" title="line break">⏎</span>);
      });
    } else {
      out.push(<Fragment key={i}>{s.text}</Fragment>);
    }
  });
  return out;
}

export function SafeText({ text, max = 400, maxLines = 12, inline = false, noExpand = false }: SafeTextProps) {
  const [expanded, setExpanded] = useState(false);
  const cut = expanded ? { shown: text, hidden: 0 } : truncate(text, max, inline ? Infinity : maxLines);
  const long = cut.hidden > 0 || expanded;
  return (
    <bdi className={inline ? 'agent-text inline' : 'agent-text'} dir="ltr" data-agent-text="">
      {renderSegments(cut.shown, inline)}
      {cut.hidden > 0 && noExpand && <span className="ellipsis">…</span>}
      {cut.hidden > 0 && !noExpand && (
        <>
          <span className="ellipsis" aria-hidden="true">
            …
          </span>
          <button type="button" className="link-button expand" onClick={() => setExpanded(true)}>
            show all ({cut.hidden.toLocaleString()} more characters)
          </button>
        </>
      )}
      {long && expanded && Array.from(text).length > max && (
        <button type="button" className="link-button expand" onClick={() => setExpanded(false)}>
          show less
        </button>
      )}
    </bdi>
  );
}

/**
 * Where the agent gave no description: Countersign's own words, styled as a system note (italic,
 * bracketed, outside any agent-text element), so an absent value never reads as text the agent sent.
 */
export function NoDescription() {
  return (
    <span className="absent" data-testid="no-description">
      [no description given]
    </span>
  );
}
