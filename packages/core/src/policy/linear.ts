/**
 * The one regular-expression engine for text an agent chooses: RE2 (the pure-JavaScript port
 * `re2js`), which matches in time linear in the input for every pattern it accepts. V8's own
 * engine backtracks, and a single request could hold the event loop for tens of seconds (a
 * JWT-shaped pattern took ~38 s on 256 KiB of `-eyJ` repeated). RE2 trades the few features that
 * need backtracking for that bound, so a pattern using them is refused when the policy loads
 * instead of being slow later:
 *
 *   compileLinear('^[a-z0-9-]+$', 'u')   // → LinearRegex
 *   compileLinear('(a)\\1', '')          // → 'backreferences (\1, \k<name>) need a backtracking engine …'
 *
 * Policy authors write JavaScript syntax (the syntax the YAML always had); this translates it to
 * RE2's and keeps JavaScript's meaning where the two differ in ways that matter for scanning:
 * `\s` is JavaScript's Unicode whitespace, not RE2's ASCII one, and `.` (without `s`) excludes
 * every JavaScript line terminator, not only `\n`. Remaining differences only widen a match
 * (RE2 folds case over all of Unicode), which for a risk signal is the cheaper mistake. In `m`
 * mode RE2 ends lines only at `\n`, where JavaScript also ends them at `\r`, U+2028 and U+2029:
 * there the text is also tested with those mapped to `\n`, so `^`/`$` anchor wherever JavaScript's
 * would (a match on either copy counts: again only wider).
 */
import { RE2JS } from 're2js';

/** What a compiled pattern can do: say whether it occurs anywhere in a text. */
export interface LinearRegex {
  test(text: string): boolean;
}

/** JavaScript's `\s` (ECMA-262 WhiteSpace and LineTerminator), as RE2 class members. */
export const JS_SPACE = '\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}';
/** JavaScript line terminators RE2's `m` mode does not know (a single character class: linear). */
const OTHER_LINE_ENDS = /[\r\u2028\u2029]/;
const OTHER_LINE_ENDS_ALL = /[\r\u2028\u2029]/g;
/** What `.` excludes in JavaScript without the `s` flag. */
const JS_LINE_END = '\\n\\r\\x{2028}\\x{2029}';

const FLAGS = /^[imsuv]*$/;
/** Letters JavaScript gives a meaning after a backslash without the u flag (every other letter is itself). */
const JS_LETTER_ESCAPES = 'dDwWsSbBnrtfvcxuk';

/**
 * Why RE2 cannot take `source` (JavaScript syntax), or null. Looks at the source itself, before
 * any translation, because `re2js`'s translator silently rewrites some of these (`\k<n>` becomes
 * the literal text `k<n>`), which would change what the pattern means instead of refusing it.
 */
function unsupported(source: string, flags: string): string | null {
  const unicode = flags.includes('u') || flags.includes('v');
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const n = source[i + 1] ?? '';
      if (n === 'k' || (n >= '1' && n <= '9')) return 'backreferences (\\1, \\k<name>) need a backtracking engine, whose cost on hostile text is unbounded; match without them';
      if (n === 'u' && source[i + 2] === '{' && !unicode) return '\\u{…} means a repeated "u" without the u flag; add the u flag or write \\uXXXX';
      if (n === 'x' && source[i + 2] === '{' && !unicode) return '\\x{…} means "x" repeated without the u flag, but a code point to RE2; write \\xHH, or \\u{…} with the u flag';
      if (n === 'q' && source[i + 2] === '{') return 'string literals in classes (\\q{…}) are not supported; use an alternation';
      // Without u, JavaScript reads `\\A`, `\\z`, `\\Q`, `\\p` … as the bare letter; RE2 gives them meanings of its own.
      if (!unicode && /^[A-Za-z]$/.test(n) && !JS_LETTER_ESCAPES.includes(n)) return `\\${n} is just the letter ${n} in JavaScript (without the u flag) but means something else to RE2; write ${n} without the backslash`;
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
      else if (c === '[' && !flags.includes('v')) return 'a [ inside a class is a literal in JavaScript but may start a POSIX class ([:alpha:]) in RE2; escape it as \\[';
      else if (flags.includes('v') && (c === '[' || ((c === '&' || c === '-') && source[i + 1] === c))) return 'the v flag\'s nested classes and set operations (&&, --) are not supported; use the u flag';
    } else if (c === '[') {
      if (source[i + 1] === ']') return 'an empty class [] matches nothing in JavaScript and is read differently by RE2; remove it';
      inClass = true;
    } else if (c === '(' && source[i + 1] === '?' && (source[i + 2] === '=' || source[i + 2] === '!')) {
      return 'lookahead ((?=…), (?!…)) needs a backtracking engine, whose cost on hostile text is unbounded; match the following text instead';
    }
  }
  return null;
}

/**
 * Rewrites RE2 source (already translated) so `\s`, `\S` and `.` mean what they mean in
 * JavaScript. Walks the source once, keeping escapes and classes intact.
 */
function jsSemantics(re2: string, dotAll: boolean): string {
  let out = '';
  let inClass = false;
  let classStart = 0; // where the open class's members start in `out`: a `]` there is a member, as RE2 reads it
  for (let i = 0; i < re2.length; i++) {
    const c = re2[i] as string;
    if (c === '\\') {
      const n = re2[i + 1] ?? '';
      if (n === 's') out += inClass ? JS_SPACE : `[${JS_SPACE}]`;
      else if (n === 'S' && !inClass) out += `[^${JS_SPACE}]`;
      else out += c + n; // `\S` inside a class keeps RE2's ASCII meaning: it can only widen the class
      i++;
    } else if (inClass) {
      if (c === ']' && out.length > classStart) inClass = false;
      else if (c === '^' && out.length === classStart && out.endsWith('[')) classStart++;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
      classStart = out.length;
    } else if (c === '.' && !dotAll) {
      out += `[^${JS_LINE_END}]`;
    } else {
      out += c;
    }
  }
  return out;
}

/**
 * The most RE2 instructions a policy author's pattern may compile to. Linear time still has a
 * constant: each byte of text can step every instruction once, and counted repetitions expand
 * (`(?:a|b){1,1000}c` is 2,002 instructions, about 1.2 s per MiB of hostile text, where a typical
 * pattern is under 100). At this bound the worst case measured about 0.1 s per MiB
 * (`bench/matching.ts`); built-in patterns are measured there instead of capped.
 */
export const MAX_PATTERN_PROGRAM = 1_000;

/**
 * Compiles a JavaScript-syntax pattern with JavaScript flags (`i m s u v`) to a linear-time
 * matcher, or returns why it cannot (a message for the policy author: the caller names the key).
 * `maxProgram` bounds its cost (see {@link MAX_PATTERN_PROGRAM}).
 */
export function compileLinear(source: string, flags: string, maxProgram: number = MAX_PATTERN_PROGRAM): LinearRegex | string {
  if (!FLAGS.test(flags) || new Set(flags).size !== flags.length) return `flags may only use i, m, s, u, v (each once); got "${flags}"`;
  try {
    new RegExp(source, flags);
  } catch (err) {
    return `not a valid regular expression: ${(err as Error).message}`;
  }
  const refused = unsupported(source, flags);
  if (refused) return refused;
  let translated: string;
  try {
    translated = jsSemantics(RE2JS.translateRegExp(source), flags.includes('s'));
  } catch (err) {
    return `the linear-time matcher cannot take this pattern: ${(err as Error).message}`;
  }
  let mode = 0;
  if (flags.includes('i')) mode |= RE2JS.CASE_INSENSITIVE;
  if (flags.includes('m')) mode |= RE2JS.MULTILINE;
  if (flags.includes('s')) mode |= RE2JS.DOTALL;
  // Lookbehind stays linear in re2js (captureless, on its NFA), but is slower: enable it only when used.
  if (/\(\?<[=!]/.test(source)) mode |= RE2JS.LOOKBEHINDS;
  try {
    const re = RE2JS.compile(translated, mode);
    const size = re.programSize();
    if (size > maxProgram) {
      return `the pattern compiles to ${size} matcher instructions (at most ${maxProgram}), so each byte of agent text would cost that many steps; narrow its counted repetitions ({m,n}) or split it into simpler patterns`;
    }
    if (!flags.includes('m')) return { test: (text) => re.test(text) };
    return { test: (text) => re.test(text) || (OTHER_LINE_ENDS.test(text) && re.test(text.replace(OTHER_LINE_ENDS_ALL, '\n'))) };
  } catch (err) {
    return `the linear-time matcher (RE2) cannot take this pattern: ${(err as Error).message}`;
  }
}

/** {@link compileLinear} for patterns written in this codebase: a refusal is a programming error. */
export function linear(source: string, flags = ''): LinearRegex {
  const re = compileLinear(source, flags, Number.POSITIVE_INFINITY);
  if (typeof re === 'string') throw new Error(`built-in pattern ${source}: ${re}`);
  return re;
}

/** RE2 source, compiled as is (no translation), for built-ins that need RE2-only syntax such as `\x{…}`. */
export function re2(source: string, flags = 0): RE2JS {
  return RE2JS.compile(source, flags);
}
