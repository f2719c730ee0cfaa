/**
 * Globs for `targets`: one syntax for paths (`/important/**`) and names (`prod-*`).
 * `*` matches within a `/`-separated segment, `**` across segments, `?` one character; the
 * whole string must match. Matching ignores case: host names are case-insensitive, and for a
 * risk signal a spurious match (more scrutiny) is the cheaper mistake.
 */
const cache = new Map<string, RegExp>();

export function globToRegExp(glob: string): RegExp {
  let re = cache.get(glob);
  if (re) return re;
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
      src += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  re = new RegExp(`^${src}$`, 'is');
  if (cache.size >= 1000) cache.clear(); // policies are reloaded over a process's life
  cache.set(glob, re);
  return re;
}

export function globMatch(glob: string, text: string): boolean {
  return globToRegExp(glob).test(text);
}
