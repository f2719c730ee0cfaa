/**
 * Globs for `targets`: one syntax for paths (`/important/**`) and names (`prod-*`).
 * `*` matches within a `/`-separated segment, `**` across segments, `?` one character; the
 * whole string must match. Matching ignores case: host names are case-insensitive, and for a
 * risk signal a spurious match (more scrutiny) is the cheaper mistake.
 *
 * The text is the agent's (`args.path`, a host name), so a glob is compiled for RE2 (`re2js`),
 * whose automaton matches in time linear in the text. As a backtracking RegExp, the default
 * `*.prod.*` (`^[^/]*\.prod\.[^/]*$`) took ~14 s on a 400 KB path.
 */
import { RE2JS } from 're2js';

const cache = new Map<string, RE2JS>();

/** The RE2 source a glob compiles to (anchored at both ends), e.g. `*.prod.*` → `^[^/]*\.prod\.[^/]*$`. */
export function globSource(glob: string): string {
  let src = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `/**/` also matches a single `/`, so `/a/**/b` matches `/a/b`.
        if (glob[i + 2] === '/') {
          src += '(?:.*/)?';
          i += 2;
        } else {
          src += '.*';
          i += 1;
        }
      } else {
        src += '[^/]*';
      }
    } else if (c === '?') {
      src += '[^/]';
    } else {
      src += RE2JS.quote(c);
    }
  }
  return `^${src}$`;
}

function compiled(glob: string): RE2JS {
  let re = cache.get(glob);
  if (re) return re;
  re = RE2JS.compile(globSource(glob), RE2JS.CASE_INSENSITIVE | RE2JS.DOTALL);
  if (cache.size >= 1000) cache.clear(); // policies are reloaded over a process's life
  cache.set(glob, re);
  return re;
}

export function globMatch(glob: string, text: string): boolean {
  return compiled(glob).test(text);
}
