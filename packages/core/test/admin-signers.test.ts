/**
 * Who may sign an admin change (core admin-change.ts, review F4 and review2 F1/F1b): two
 * operators are in the same hands when someone who can act as either one holds, or could hold,
 * the other's credential or made the other admin — both ways, transitively.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { actingAs, adminChangeSigners, sameHands, type LineageEdge } from '../src/policy/admin-change.ts';

const holds = (issuerId: string, operatorId: string): LineageEdge => ({ issuerId, operatorId, kind: 'holds' });
const madeAdmin = (issuerId: string, operatorId: string): LineageEdge => ({ issuerId, operatorId, kind: 'madeAdmin' });
/** `by` created `who` as an admin: holds its first token and made it admin. */
const minted = (by: string, who: string) => [holds(by, who), madeAdmin(by, who)];

describe('sameHands', () => {
  it.each<[string, LineageEdge[], string, string, boolean]>([
    ['oneself', [], 'a', 'a', true],
    ['strangers', [], 'a', 'b', false],
    ['the proposer created the signer', minted('p', 's'), 'p', 's', true],
    ['the signer created the proposer (review2 F1b: file as the sock, sign as yourself)', minted('s', 'p'), 'p', 's', true],
    ['the signer rotated the proposer\'s token (review2 F1)', [holds('s', 'p')], 'p', 's', true],
    ['the proposer rotated the signer\'s token', [holds('p', 's')], 'p', 's', true],
    ['one admin holds both tokens (made both, neither rotated their own)', [...minted('r', 'p'), ...minted('r', 's')], 'p', 's', true],
    ['made by one admin, each rotated their own since', [madeAdmin('r', 'p'), madeAdmin('r', 's')], 'p', 's', false],
    ['made admin never ends (the maker may have done the "own" rotation)', [madeAdmin('p', 's')], 'p', 's', true],
    ['a chain of made admins', [madeAdmin('p', 'x'), madeAdmin('x', 's')], 'p', 's', true],
    ['a chain upwards', [madeAdmin('s', 'x'), madeAdmin('x', 'p')], 'p', 's', true],
    ['someone holding the proposer made the signer admin', [holds('h', 'p'), madeAdmin('h', 's')], 'p', 's', true],
    ['someone holding the signer rotated the proposer\'s token', [holds('h', 's'), holds('h', 'p')], 'p', 's', true],
    ['holds of holds: x holds h, h holds s, x made p', [holds('x', 'h'), holds('h', 's'), madeAdmin('x', 'p')], 'p', 's', true],
    ['siblings made admin by a held operator: h holds nobody', [madeAdmin('h', 'p'), madeAdmin('h', 's')], 'p', 's', false],
  ])('%s', (_name, edges, p, s, expected) => {
    expect(sameHands(p, s, edges)).toBe(expected);
    expect(sameHands(s, p, edges)).toBe(expected);
  });

  it('actingAs: the holders of the credential and the holders of theirs', () => {
    expect([...actingAs('p', [holds('h', 'p'), holds('x', 'h'), madeAdmin('y', 'p')])].sort()).toEqual(['h', 'p', 'x']);
  });

  const ids = fc.constantFrom('a', 'b', 'c', 'd', 'e');
  const edge = fc.record({ issuerId: ids, operatorId: ids, kind: fc.constantFrom<'holds' | 'madeAdmin'>('holds', 'madeAdmin') });

  it('is symmetric, and more lineage never makes two operators independent', () => {
    fc.assert(
      fc.property(fc.array(edge, { maxLength: 8 }), fc.array(edge, { maxLength: 4 }), ids, ids, (edges, more, a, b) => {
        expect(sameHands(a, b, edges)).toBe(sameHands(b, a, edges));
        if (sameHands(a, b, edges)) expect(sameHands(a, b, [...edges, ...more])).toBe(true);
      }),
    );
  });

  it('an edge between them (either way, either kind) always makes them one', () => {
    fc.assert(
      fc.property(fc.array(edge, { maxLength: 8 }), ids, ids, fc.constantFrom<'holds' | 'madeAdmin'>('holds', 'madeAdmin'), fc.boolean(), (edges, a, b, kind, flip) => {
        const e = flip ? { issuerId: b, operatorId: a, kind } : { issuerId: a, operatorId: b, kind };
        expect(sameHands(a, b, [...edges, e])).toBe(true);
      }),
    );
  });
});

describe('adminChangeSigners', () => {
  const admins = ['root', 'bob', 'carol', 'mallory'].map((id) => ({ id, name: id }));
  it('the README\'s setup: root makes bob and carol, who rotate their own tokens; they sign each other\'s changes, root signs neither\'s', () => {
    const edges = [madeAdmin('root', 'bob'), madeAdmin('root', 'carol'), madeAdmin('root', 'mallory')];
    expect(adminChangeSigners('bob', admins, edges).map((a) => a.id)).toEqual(['carol', 'mallory']);
    expect(adminChangeSigners('root', admins, edges)).toEqual([]);
    // mallory rotates carol's token: she holds it, so neither signs the other's change; bob's change is still
    // for either to sign (mallory playing carol is still one person other than bob).
    const stolen = [...edges, holds('mallory', 'carol')];
    expect(adminChangeSigners('carol', admins, stolen).map((a) => a.id)).toEqual(['bob']);
    expect(adminChangeSigners('mallory', admins, stolen).map((a) => a.id)).toEqual(['bob']);
    expect(adminChangeSigners('bob', admins, stolen).map((a) => a.id)).toEqual(['carol', 'mallory']);
  });
});
