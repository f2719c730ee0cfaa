/**
 * Features for the linear models: hashed word uni/bigrams and character 3–5-grams, plus a few
 * cue counts that name what injections do (override earlier instructions, assign a role, ask
 * for the system prompt, speak in chat-template tokens, give the agent orders from inside data,
 * hide behind encodings). Cues are features, learned like the n-grams; the rules in `rules.ts`
 * read the same cues to explain and to raise severity, never to decide on their own.
 *
 * One pass over char codes, no regex, no per-character allocation: this is the hot path of the
 * ≥ 10 MB/s target.
 */
import { fnv1a } from './bytes.ts';
import { countTemplateTokens } from './tokens.ts';

/** log2 of the hashed feature space. 2^18 int8 weights per channel keeps the model file small. */
export const HASH_BITS = 18;
export const HASH_DIM = 1 << HASH_BITS;

export const CUE_NAMES = [
  'override',
  'override-prior',
  'new-instructions',
  'role-play',
  'exfiltration',
  'system-prompt-mention',
  'template-tokens',
  'imperative-start',
  'please-start',
  'agent-address',
  'second-person',
  'first-person',
  'obfuscation',
  'decoded',
  'question',
  'log-length',
] as const;
export type CueName = (typeof CUE_NAMES)[number];
export const CUE_COUNT = CUE_NAMES.length;
const CUE = Object.fromEntries(CUE_NAMES.map((n, i) => [n, i])) as Record<CueName, number>;

/** Total feature count: hashed n-grams, then cues, then nothing else (the bias is separate). */
export const FEATURE_DIM = HASH_DIM + CUE_COUNT;

/** Facts about a segment that the text alone does not show. */
export interface SegmentFlags {
  /** Normalisation findings inside the segment (tag characters, homoglyphs, …). */
  readonly obfuscation: number;
  /** The segment is text decoded from base64/hex/rot13. */
  readonly decoded: boolean;
}

// Word classes. Lists, not patterns: a word's class is one Map lookup on its hash.
const C_OVERRIDE = 1 << 0;
const C_PRIOR = 1 << 1;
const C_INSTR = 1 << 2;
const C_ROLE = 1 << 3;
const C_YOU = 1 << 4;
const C_NOW = 1 << 5;
const C_REVEAL = 1 << 6;
const C_SECRET = 1 << 7;
const C_PROMPT = 1 << 8;
const C_AGENT = 1 << 9;
const C_IMPV = 1 << 10;
const C_PLEASE = 1 << 11;
const C_NEW = 1 << 12;
const C_MY = 1 << 13;
const C_AS = 1 << 14;
const C_ARE = 1 << 15;

const WORDS: ReadonlyArray<readonly [number, string]> = [
  [C_OVERRIDE, 'ignore ignoring disregard forget skip override overrule bypass neglect abandon discard drop ditch ignoriere ignorieren vergiss vergessen ignora ignorar olvida olvide oublie oubliez ignorez cancel void'],
  [C_PRIOR, 'previous previously prior above earlier preceding foregoing all any every those these initial original old existing vorherigen vorherige bisherigen bisherige alle obigen vorangegangenen anterior anteriores précédentes'],
  [C_INSTR, 'instructions instruction rules rule directions directive directives prompt prompts guidelines guideline guidance tasks task context commands command constraints restrictions programming orders anweisungen anweisung aufgaben aufgabe befehle regeln vorgaben instrucciones consignes'],
  [C_ROLE, 'pretend roleplay role persona character simulate impersonate dan jailbreak jailbroken unrestricted unfiltered uncensored evil stell spiel'],
  [C_YOU, 'you your yours yourself du dich dein deine dir sie ihr vous tu'],
  [C_NOW, 'now henceforth hereafter jetzt nun ahora maintenant onwards'],
  [C_REVEAL, 'reveal print show display output repeat tell leak share write give spell list disclose dump expose return paste zeige zeig gib verrate nenne schreibe'],
  [C_SECRET, 'system initial original hidden secret internal confidential password passwords credentials token geheim geheime passwort verborgene'],
  [C_PROMPT, 'prompt prompts instructions message rules configuration guidelines password passwort key'],
  [C_AGENT, 'assistant ai chatbot bot model agent gpt llm chatgpt claude gemini ki assistent'],
  [C_IMPV, 'grant transfer send forward delete unlock pay initiate change update add create email download move schedule book cancel disable deactivate turn set withdraw deposit purchase buy order post install execute run open reset give allow invite remove retrieve get find use share leave sell close apply modify provide generate search reply tell write answer translate summarize say print output ignore forget disregard act pretend start stop visit navigate click upload export copy save post publish approve authorize enable revoke replace insert append make'],
  [C_PLEASE, 'please kindly bitte important urgent urgently immediately must attention note'],
  [C_NEW, 'new different following instead only real actual true next'],
  [C_MY, 'my mine me i'],
  [C_AS, 'as like als'],
  [C_ARE, 'are re now bist sind'],
];

const CLASS_OF: ReadonlyMap<number, number> = (() => {
  const m = new Map<number, number>();
  for (const [bit, list] of WORDS) for (const w of list.split(' ')) m.set(fnv1a(w), (m.get(fnv1a(w)) ?? 0) | bit);
  return m;
})();

function lowerCode(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c | 0x20;
  if (c >= 0x30 && c <= 0x39) return 0x30; // digits fold to 0: ids and amounts generalise
  if (c >= 0xc0 && c <= 0xde && c !== 0xd7) return c + 0x20;
  return c;
}

/** Word characters: ASCII letters/digits, apostrophe inside words, and letters beyond Latin-1 punctuation. */
function wordKind(c: number): 0 | 1 | 2 {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)) return 1;
  if (c < 0xc0) return 0;
  if ((c >= 0x2000 && c <= 0x206f) || (c >= 0x3000 && c <= 0x303f) || (c >= 0xff00 && c <= 0xff20) || (c >= 0xd800 && c <= 0xdfff)) return 0;
  // CJK and Hangul: each character is its own word.
  if ((c >= 0x3040 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7af)) return 2;
  return 1;
}

const SEED_WORD = 0x1b873593;
const SEED_BIGRAM = 0x5bd1e995;
const SEED_CHAR = 0x27d4eb2f;

function bucket(h: number, seed: number): number {
  return Math.imul((h ^ seed) >>> 0, 0x9e3779b1) >>> (32 - HASH_BITS);
}

/**
 * Visit the features of one segment: `hashed(index)` once per n-gram occurrence (the caller
 * counts and normalises), and the cue vector written into `cues` (length CUE_COUNT).
 */
export function visitFeatures(text: string, flags: SegmentFlags, hashed: (index: number) => void, cues: Float64Array): void {
  cues.fill(0);
  const n = text.length;
  // Char n-gram ring of the last five folded codes (0 = nothing yet).
  let r1 = 0x20;
  let r2 = 0;
  let r3 = 0;
  let r4 = 0;
  let prevSpace = true;
  let wordHash = 0x811c9dc5;
  let inWord = false;
  let prevWord = 0;
  let words = 0;
  let firstClass = -1;
  let secondClass = -1;
  // Last word index at which each class was seen.
  let lastOverride = -99;
  let lastPrior = -99;
  let lastReveal = -99;
  let lastSecret = -99;
  let lastYou = -99;
  let lastAre = -99;
  let lastNew = -99;
  let lastRoleAct = -99;
  let you = 0;
  let my = 0;
  let question = 0;
  let systemPrev = false;

  const endWord = (): void => {
    const h = wordHash >>> 0;
    hashed(bucket(h, SEED_WORD));
    if (words > 0) hashed(bucket((Math.imul(prevWord, 0x01000193) ^ h) >>> 0, SEED_BIGRAM));
    else hashed(bucket(h, SEED_BIGRAM ^ 0x1234)); // first word of the segment, its own feature
    const cls = CLASS_OF.get(h) ?? 0;
    const w = words;
    if (w === 0) firstClass = cls;
    else if (w === 1) secondClass = cls;
    if (cls & C_INSTR) {
      if (w - lastOverride <= 6) {
        cues[CUE['override']]! += 1;
        if (lastPrior > lastOverride) cues[CUE['override-prior']]! += 1;
      }
      if (w - lastNew <= 2) cues[CUE['new-instructions']]! += 1;
    }
    if (cls & C_PROMPT) {
      if (w - lastReveal <= 6 && w - lastSecret <= 3) cues[CUE['exfiltration']]! += 1;
      if (systemPrev || w - lastYou <= 1) cues[CUE['system-prompt-mention']]! += 1;
    }
    // "you are now", "act as", "pretend", "jailbreak"…
    if (cls & C_ROLE) cues[CUE['role-play']]! += 1;
    if (cls & C_NOW && w - lastAre <= 1 && w - lastYou <= 2) cues[CUE['role-play']]! += 1;
    if (cls & C_AS && w - lastRoleAct <= 1) cues[CUE['role-play']]! += 1;
    if (cls & C_AGENT) cues[CUE['agent-address']]! += 1;
    if (cls & C_YOU) {
      you++;
      lastYou = w;
    }
    if (cls & C_MY) my++;
    if (cls & C_OVERRIDE) lastOverride = w;
    if (cls & C_PRIOR) lastPrior = w;
    if (cls & C_REVEAL) lastReveal = w;
    if (cls & C_SECRET) lastSecret = w;
    if (cls & C_ARE) lastAre = w;
    if (cls & C_NEW) lastNew = w;
    lastRoleAct = h === ACT ? w : lastRoleAct;
    systemPrev = h === SYSTEM;
    prevWord = h;
    words++;
  };

  for (let i = 0; i < n; i++) {
    const raw = text.charCodeAt(i);
    if (raw === 0x3f) question++;
    const kind = wordKind(raw);
    let c: number;
    if (kind === 0) {
      if (inWord) {
        endWord();
        inWord = false;
      }
      if (prevSpace) continue;
      c = 0x20;
      prevSpace = true;
    } else {
      c = lowerCode(raw);
      prevSpace = false;
      if (kind === 2) {
        if (inWord) endWord();
        wordHash = Math.imul(0x811c9dc5 ^ c, 0x01000193);
        endWord();
        inWord = false;
      } else {
        if (!inWord) {
          inWord = true;
          wordHash = 0x811c9dc5;
        }
        wordHash = Math.imul(wordHash ^ c, 0x01000193);
      }
    }
    // Character n-grams of length 3, 4, 5 ending at c.
    if (r2 !== 0) {
      const g3 = Math.imul(Math.imul(Math.imul(0x811c9dc5 ^ r2, 0x01000193) ^ r1, 0x01000193) ^ c, 0x01000193);
      hashed(bucket(g3 >>> 0, SEED_CHAR));
      if (r3 !== 0) {
        const g4 = Math.imul(g3 ^ r3, 0x01000193);
        hashed(bucket(g4 >>> 0, SEED_CHAR ^ 4));
        if (r4 !== 0) hashed(bucket(Math.imul(g4 ^ r4, 0x01000193) >>> 0, SEED_CHAR ^ 5));
      }
    }
    r4 = r3;
    r3 = r2;
    r2 = r1;
    r1 = c;
  }
  if (inWord) endWord();

  const startsWithPlease = (firstClass & C_PLEASE) !== 0;
  if ((firstClass & C_IMPV) !== 0 || (startsWithPlease && (secondClass & C_IMPV) !== 0)) cues[CUE['imperative-start']] = 1;
  if (startsWithPlease) cues[CUE['please-start']] = 1;
  cues[CUE['template-tokens']] = countTemplateTokens(text);
  cues[CUE['second-person']] = words > 0 ? you / words : 0;
  cues[CUE['first-person']] = words > 0 ? my / words : 0;
  cues[CUE['obfuscation']] = flags.obfuscation;
  cues[CUE['decoded']] = flags.decoded ? 1 : 0;
  cues[CUE['question']] = question > 0 ? 1 : 0;
  cues[CUE['log-length']] = Math.log1p(words) / 5;
  // Counts saturate: the fifth "ignore" says no more than the second.
  for (let k = 0; k < CUE_COUNT; k++) {
    const v = cues[k] as number;
    if (v > 3) cues[k] = 3;
  }
}

const ACT = fnv1a('act');
const SYSTEM = fnv1a('system');

/** The cue index of a name, for rules and explanations. */
export function cueIndex(name: CueName): number {
  return CUE[name];
}

/**
 * Sparse features of one segment as the model sees them (training uses this): each distinct
 * hashed n-gram once, L2-normalised, then the cues.
 */
export function sparseFeatures(text: string, flags: SegmentFlags): { index: Int32Array; value: Float32Array } {
  const counts = new Map<number, number>();
  const cues = new Float64Array(CUE_COUNT);
  visitFeatures(text, flags, (k) => counts.set(k, 1), cues);
  const norm = counts.size > 0 ? 1 / Math.sqrt(counts.size) : 0;
  const keys = [...counts.keys()].sort((a, b) => a - b);
  const nCue = cues.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0);
  const index = new Int32Array(keys.length + nCue);
  const value = new Float32Array(keys.length + nCue);
  keys.forEach((k, j) => {
    index[j] = k;
    value[j] = (counts.get(k) as number) * norm;
  });
  let j = keys.length;
  for (let k = 0; k < CUE_COUNT; k++) {
    if (cues[k] !== 0) {
      index[j] = HASH_DIM + k;
      value[j] = cues[k] as number;
      j++;
    }
  }
  return { index, value };
}
