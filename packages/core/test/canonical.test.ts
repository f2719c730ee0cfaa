/**
 * Canonical JSON is what approvals and receipts bind to: the same value must give the same bytes
 * across versions. Fixed vectors (the bytes receipts already carry), and a property check against
 * a plain reference of the rule (keys sorted by UTF-16 code units, undefined members dropped,
 * non-finite numbers as null, no whitespace).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, payloadKey } from '../src/canonical.ts';

function reference(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
    return value === undefined ? 'null' : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(',')}}`;
}

describe('canonicalJson', () => {
  it('gives the fixed bytes for tricky values', () => {
    const value = { b: [1, undefined, { z: 1, a: [null, -0, 1e21, '\u2028'] }], a: undefined, ä: 1, Z: 2, '\ud83d\ude00': 3, '\uffff': 4, c: Number.NaN, d: Number.POSITIVE_INFINITY };
    expect(canonicalJson(value)).toBe('{"Z":2,"b":[1,null,{"a":[null,0,1e+21,"\u2028"],"z":1}],"c":null,"d":null,"ä":1,"😀":3,"￿":4}');
    // A surrogate pair sorts by code units, before U+FFFF (not by code point).
    expect(canonicalJson({ '\uffff': 1, '\ud83d\ude00': 2 })).toBe('{"😀":2,"￿":1}');
    expect(payloadKey('delete_data', { path: '/tmp', force: true })).toBe('{"action":"delete_data","args":{"force":true,"path":"/tmp"}}');
    expect(canonicalJson([])).toBe('[]');
    expect(canonicalJson({})).toBe('{}');
    expect(canonicalJson({ a: undefined })).toBe('{}');
  });

  it('equals the reference rule on arbitrary JSON-like values', () => {
    const value = fc.letrec((tie) => ({
      leaf: fc.oneof(fc.constant(null), fc.constant(undefined), fc.boolean(), fc.double(), fc.integer(), fc.string({ unit: 'binary' })),
      node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 5 }), fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), tie('node'), { maxKeys: 6 })),
    })).node;
    fc.assert(
      fc.property(value, (v) => canonicalJson(v) === reference(v)),
      { numRuns: 2000 },
    );
  });
});
