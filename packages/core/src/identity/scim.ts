/**
 * SCIM 2.0 (RFC 7643 resources, RFC 7644 protocol), the parts a provisioning client sends, as
 * pure functions: reading a User or Group body, the `filter=attr eq "value"` query, and PATCH
 * operations applied to a resource. The shell (server identity/) stores and answers.
 *
 * Written for what Okta and Entra ID actually send: operation names in any case (`"Replace"`),
 * booleans as strings (`"False"`), paths with a value filter (`emails[type eq "work"].value`,
 * `members[value eq "…"]`), operations without a path whose value holds dotted keys, and
 * attributes Countersign does not keep (title, phone numbers, the enterprise extension), which
 * are accepted and ignored. A password is never kept.
 */

export const SCIM_USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const SCIM_GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const SCIM_PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const SCIM_LIST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
export const SCIM_ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';

/** At most this many operations in one PATCH, and members in one group. */
export const SCIM_MAX_OPERATIONS = 1000;
export const SCIM_MAX_MEMBERS = 20_000;

export type ScimType = 'invalidFilter' | 'invalidPath' | 'invalidValue' | 'invalidSyntax' | 'uniqueness' | 'mutability' | 'tooMany' | 'noTarget';

/** A refusal as SCIM states it (RFC 7644 §3.12). */
export class ScimProblem extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 500 | 501 | 503,
    readonly scimType: ScimType | null,
    message: string,
  ) {
    super(message);
    this.name = 'ScimProblem';
  }
}

const bad = (scimType: ScimType, message: string) => new ScimProblem(400, scimType, message);

export interface ScimEmail {
  readonly value: string;
  readonly type: string | null;
  readonly primary: boolean;
}

export interface ScimName {
  readonly givenName: string | null;
  readonly familyName: string | null;
  readonly formatted: string | null;
}

export interface ScimUserData {
  readonly userName: string;
  readonly externalId: string | null;
  readonly active: boolean;
  readonly displayName: string | null;
  readonly name: ScimName;
  readonly emails: readonly ScimEmail[];
}

export interface ScimGroupData {
  readonly displayName: string;
  readonly externalId: string | null;
  /** Member ids (Countersign's SCIM user ids), unique, in the order first given. */
  readonly members: readonly string[];
}

const EMPTY_NAME: ScimName = { givenName: null, familyName: null, formatted: null };

// ---- values ----

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `true`/`false`, or the strings Entra sometimes sends ("True", "False"). */
export function scimBoolean(v: unknown, what: string): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true') return true;
    if (s === 'false') return false;
  }
  throw bad('invalidValue', `${what} must be true or false`);
}

function text(v: unknown, what: string, max: number, required: true): string;
function text(v: unknown, what: string, max: number, required?: false): string | null;
function text(v: unknown, what: string, max: number, required = false): string | null {
  if (v === null || v === undefined) {
    if (required) throw bad('invalidValue', `${what} is required`);
    return null;
  }
  if (typeof v !== 'string') throw bad('invalidValue', `${what} must be a string`);
  const s = v.trim();
  if (s.length > max) throw bad('invalidValue', `${what} is longer than ${max} characters`);
  if (/[\u0000-\u001f\u007f]/.test(s)) throw bad('invalidValue', `${what} holds control characters`);
  if (s === '') {
    if (required) throw bad('invalidValue', `${what} is required`);
    return null;
  }
  return s;
}

function readName(v: unknown): ScimName {
  if (v === null || v === undefined) return EMPTY_NAME;
  if (!isObject(v)) throw bad('invalidValue', 'name must be an object');
  const field = (k: string) => text(lookup(v, k), `name.${k}`, 200);
  return { givenName: field('givenName'), familyName: field('familyName'), formatted: field('formatted') };
}

function readEmails(v: unknown): ScimEmail[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw bad('invalidValue', 'emails must be an array');
  if (v.length > 20) throw bad('invalidValue', 'at most 20 emails');
  return v.map((e, i) => {
    if (!isObject(e)) throw bad('invalidValue', `emails[${i}] must be an object`);
    const primary = lookup(e, 'primary');
    return { value: text(lookup(e, 'value'), `emails[${i}].value`, 320, true), type: text(lookup(e, 'type'), `emails[${i}].type`, 50), primary: primary === undefined || primary === null ? false : scimBoolean(primary, `emails[${i}].primary`) };
  });
}

/** An attribute by name, case-insensitively (RFC 7643 §2.1). */
function lookup(o: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(o, name)) return o[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(o)) if (k.toLowerCase() === lower) return o[k];
  return undefined;
}

function checkSchemas(body: Record<string, unknown>, schema: string): void {
  const schemas = lookup(body, 'schemas');
  if (schemas === undefined) return;
  if (!Array.isArray(schemas) || !schemas.every((s) => typeof s === 'string')) throw bad('invalidSyntax', 'schemas must be an array of strings');
  if (!schemas.includes(schema)) throw bad('invalidSyntax', `schemas must include ${schema}`);
}

// ---- bodies ----

/**
 * A userName: ASCII only (review F3). It names an operator and is matched case-insensitively, and
 * full Unicode case folding would make a look-alike (U+212A KELVIN SIGN for k) the same user.
 */
function userName(v: unknown): string {
  const s = text(v, 'userName', 256, true);
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) throw bad('invalidValue', 'userName must be ASCII (internationalised addresses are not supported)');
  return s;
}

/** A User from a PUT body: `active` is null when the body leaves it out (RFC 7643 gives it no default). */
export interface ScimUserReplacement extends Omit<ScimUserData, 'active'> {
  readonly active: boolean | null;
}

/** A User from a PUT body (PUT replaces what Countersign keeps, except an absent `active`: `replaceScimUser`). */
export function readScimUserReplacement(body: unknown): ScimUserReplacement {
  if (!isObject(body)) throw bad('invalidSyntax', 'the body must be a JSON object');
  checkSchemas(body, SCIM_USER_SCHEMA);
  const active = lookup(body, 'active');
  return {
    userName: userName(lookup(body, 'userName')),
    externalId: text(lookup(body, 'externalId'), 'externalId', 256),
    active: active === undefined || active === null ? null : scimBoolean(active, 'active'),
    displayName: text(lookup(body, 'displayName'), 'displayName', 256),
    name: readName(lookup(body, 'name')),
    emails: readEmails(lookup(body, 'emails')),
  };
}

/**
 * A PUT applied to the user it replaces: everything from the body, but a PUT without `active`
 * keeps the current value (review2 F8: defaulting it to true re-activated a deactivated user,
 * failing open; several generic SCIM clients send a profile without it).
 */
export function replaceScimUser(current: ScimUserData, put: ScimUserReplacement): ScimUserData {
  return { ...put, active: put.active ?? current.active };
}

/** A User from a POST body (`active` defaults to true: a new user is active unless the body says otherwise). */
export function readScimUser(body: unknown): ScimUserData {
  const user = readScimUserReplacement(body);
  return { ...user, active: user.active ?? true };
}

function readMembers(v: unknown, what = 'members'): string[] {
  if (v === null || v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  if (list.length > SCIM_MAX_MEMBERS) throw new ScimProblem(400, 'tooMany', `at most ${SCIM_MAX_MEMBERS} members`);
  return list.map((m, i) => {
    if (!isObject(m)) throw bad('invalidValue', `${what}[${i}] must be an object with a value`);
    return text(lookup(m, 'value'), `${what}[${i}].value`, 100, true);
  });
}

function unique(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}

export function readScimGroup(body: unknown): ScimGroupData {
  if (!isObject(body)) throw bad('invalidSyntax', 'the body must be a JSON object');
  checkSchemas(body, SCIM_GROUP_SCHEMA);
  return {
    displayName: text(lookup(body, 'displayName'), 'displayName', 256, true),
    externalId: text(lookup(body, 'externalId'), 'externalId', 256),
    members: unique(readMembers(lookup(body, 'members'))),
  };
}

// ---- filter ----

export interface ScimFilter {
  /** Lower case, without the core schema prefix. */
  readonly attribute: string;
  readonly value: string | boolean | null;
}

/**
 * `attribute eq value`, the one filter provisioning clients send (RFC 7644 §3.4.2.2): the value a
 * JSON string, true, false or null. Anything else is `invalidFilter`. Hand-parsed, linear.
 */
export function parseScimFilter(filter: string, allowed: readonly string[]): ScimFilter {
  if (filter.length > 1000) throw bad('invalidFilter', 'the filter is too long');
  const s = filter.trim();
  let i = 0;
  while (i < s.length && s[i] !== ' ') i++;
  const rawAttr = s.slice(0, i);
  while (i < s.length && s[i] === ' ') i++;
  let j = i;
  while (j < s.length && s[j] !== ' ') j++;
  const op = s.slice(i, j).toLowerCase();
  while (j < s.length && s[j] === ' ') j++;
  const rest = s.slice(j);
  if (rawAttr === '' || op !== 'eq' || rest === '') throw bad('invalidFilter', 'only `attribute eq "value"` filters are supported');
  const attribute = stripSchema(rawAttr).toLowerCase();
  if (!allowed.includes(attribute)) throw bad('invalidFilter', `filtering on ${rawAttr.slice(0, 100)} is not supported (use ${allowed.join(', ')})`);
  let value: string | boolean | null;
  if (rest === 'true' || rest === 'false') value = rest === 'true';
  else if (rest === 'null') value = null;
  else {
    if (rest.length < 2 || rest[0] !== '"' || rest[rest.length - 1] !== '"') throw bad('invalidFilter', 'the value must be a quoted string');
    try {
      const parsed: unknown = JSON.parse(rest);
      if (typeof parsed !== 'string') throw new Error('not a string');
      value = parsed;
    } catch {
      throw bad('invalidFilter', 'the value must be one quoted string');
    }
  }
  return { attribute, value };
}

function stripSchema(path: string): string {
  for (const prefix of [`${SCIM_USER_SCHEMA}:`, `${SCIM_GROUP_SCHEMA}:`]) {
    if (path.length > prefix.length && path.slice(0, prefix.length).toLowerCase() === prefix.toLowerCase()) return path.slice(prefix.length);
  }
  return path;
}

// ---- PATCH ----

export interface PatchOperation {
  readonly op: 'add' | 'replace' | 'remove';
  readonly path: string | null;
  readonly value: unknown;
}

export function readPatch(body: unknown): PatchOperation[] {
  if (!isObject(body)) throw bad('invalidSyntax', 'the body must be a JSON object');
  checkSchemas(body, SCIM_PATCH_SCHEMA);
  const ops = lookup(body, 'Operations');
  if (!Array.isArray(ops) || ops.length === 0) throw bad('invalidSyntax', 'Operations must be a non-empty array');
  if (ops.length > SCIM_MAX_OPERATIONS) throw new ScimProblem(400, 'tooMany', `at most ${SCIM_MAX_OPERATIONS} operations`);
  return ops.map((o, i) => {
    if (!isObject(o)) throw bad('invalidSyntax', `Operations[${i}] must be an object`);
    const op = lookup(o, 'op');
    const name = typeof op === 'string' ? op.trim().toLowerCase() : '';
    if (name !== 'add' && name !== 'replace' && name !== 'remove') throw bad('invalidSyntax', `Operations[${i}].op must be add, replace or remove`);
    const path = lookup(o, 'path');
    if (path !== undefined && path !== null && (typeof path !== 'string' || path.length > 500)) throw bad('invalidPath', `Operations[${i}].path must be a string`);
    const value = lookup(o, 'value');
    if (name !== 'remove' && (path === undefined || path === null || path === '') && !isObject(value)) throw bad('invalidValue', `Operations[${i}]: without a path the value must be an object`);
    return { op: name, path: typeof path === 'string' && path.trim() !== '' ? path.trim() : null, value };
  });
}

/** A path: `attr`, `attr.sub`, or `attr[key eq "v"]` with an optional `.sub`. */
interface ParsedPath {
  readonly attr: string;
  readonly sub: string | null;
  readonly filter: ScimFilter | null;
}

function parsePath(raw: string): ParsedPath {
  const path = stripSchema(raw);
  const open = path.indexOf('[');
  if (open === -1) {
    const dot = path.indexOf('.');
    // An extension's attribute (`urn:…:User:department`) holds dots in its URN: keep it whole.
    if (path.toLowerCase().startsWith('urn:')) return { attr: path.toLowerCase(), sub: null, filter: null };
    return dot === -1 ? { attr: path.toLowerCase(), sub: null, filter: null } : { attr: path.slice(0, dot).toLowerCase(), sub: path.slice(dot + 1).toLowerCase(), filter: null };
  }
  const close = path.indexOf(']', open);
  if (close === -1) throw bad('invalidPath', `unbalanced [ in path ${raw.slice(0, 100)}`);
  const attr = path.slice(0, open).toLowerCase();
  const filter = parseScimFilter(path.slice(open + 1, close), ['type', 'value', 'primary', 'display']);
  const after = path.slice(close + 1);
  if (after !== '' && !after.startsWith('.')) throw bad('invalidPath', `unexpected text after ] in ${raw.slice(0, 100)}`);
  return { attr, sub: after === '' ? null : after.slice(1).toLowerCase(), filter };
}

/** Applies PATCH operations to a user in order (RFC 7644 §3.5.2); unknown attributes are ignored. */
export function applyUserPatch(user: ScimUserData, ops: readonly PatchOperation[]): ScimUserData {
  let next: ScimUserData = user;
  for (const op of ops) {
    if (op.path === null) {
      const value = op.value as Record<string, unknown>;
      if (op.op === 'remove') throw bad('noTarget', 'remove needs a path');
      for (const [key, v] of Object.entries(value)) next = setUserPath(next, op.op, parsePath(key), v);
    } else {
      next = setUserPath(next, op.op, parsePath(op.path), op.value);
    }
  }
  return next;
}

function setUserPath(user: ScimUserData, op: PatchOperation['op'], path: ParsedPath, value: unknown): ScimUserData {
  const remove = op === 'remove';
  switch (path.attr) {
    case 'active':
      if (remove) throw bad('invalidValue', 'active cannot be removed');
      return { ...user, active: scimBoolean(value, 'active') };
    case 'username':
      if (remove) throw new ScimProblem(400, 'mutability', 'userName cannot be removed');
      return { ...user, userName: userName(value) };
    case 'displayname':
      return { ...user, displayName: remove ? null : text(value, 'displayName', 256) };
    case 'externalid':
      return { ...user, externalId: remove ? null : text(value, 'externalId', 256) };
    case 'name': {
      if (path.sub === null) return { ...user, name: remove ? EMPTY_NAME : readName(value) };
      const key = path.sub === 'givenname' ? 'givenName' : path.sub === 'familyname' ? 'familyName' : path.sub === 'formatted' ? 'formatted' : null;
      if (key === null) return user;
      return { ...user, name: { ...user.name, [key]: remove ? null : text(value, `name.${key}`, 200) } };
    }
    case 'emails':
      return { ...user, emails: patchEmails(user.emails, op, path, value) };
    default:
      return user; // kept by the provider, not by Countersign
  }
}

function patchEmails(emails: readonly ScimEmail[], op: PatchOperation['op'], path: ParsedPath, value: unknown): ScimEmail[] {
  if (path.filter === null) {
    if (path.sub !== null) return [...emails];
    if (op === 'remove') return [];
    const given = readEmails(Array.isArray(value) ? value : [value]);
    return op === 'add' ? [...emails, ...given].slice(0, 20) : given;
  }
  const { attribute, value: wanted } = path.filter;
  const matches = (e: ScimEmail) => (attribute === 'type' ? e.type?.toLowerCase() === String(wanted).toLowerCase() : attribute === 'value' ? e.value.toLowerCase() === String(wanted).toLowerCase() : attribute === 'primary' ? e.primary === wanted : false);
  if (op === 'remove') return emails.filter((e) => !matches(e));
  if (path.sub !== null && path.sub !== 'value') return [...emails];
  const v = path.sub === 'value' ? text(value, 'emails.value', 320, true) : readEmails([value])[0]!.value;
  const found = emails.some(matches);
  if (found) return emails.map((e) => (matches(e) ? { ...e, value: v } : e));
  return [...emails, { value: v, type: attribute === 'type' && typeof wanted === 'string' ? wanted : null, primary: false }].slice(0, 20);
}

/** Applies PATCH operations to a group: members added, removed or replaced, its name or external id changed. */
export function applyGroupPatch(group: ScimGroupData, ops: readonly PatchOperation[]): ScimGroupData {
  let displayName = group.displayName;
  let externalId = group.externalId;
  let members = [...group.members];
  const setMembers = (op: PatchOperation['op'], value: unknown, filter: ScimFilter | null) => {
    if (op === 'remove') {
      if (filter !== null) {
        if (filter.attribute !== 'value') throw bad('invalidFilter', 'members can be filtered on value only');
        members = members.filter((m) => m !== filter.value);
      } else if (value === undefined || value === null) members = [];
      else {
        const gone = new Set(readMembers(value));
        members = members.filter((m) => !gone.has(m));
      }
    } else if (op === 'add') members = unique([...members, ...readMembers(value)]);
    else members = unique(readMembers(value));
    if (members.length > SCIM_MAX_MEMBERS) throw new ScimProblem(400, 'tooMany', `at most ${SCIM_MAX_MEMBERS} members`);
  };
  const apply = (op: PatchOperation['op'], path: ParsedPath, value: unknown) => {
    switch (path.attr) {
      case 'members':
        if (path.sub !== null) throw bad('invalidPath', 'a member has only its value');
        setMembers(op, value, path.filter);
        return;
      case 'displayname':
        if (op === 'remove') throw new ScimProblem(400, 'mutability', 'displayName cannot be removed');
        displayName = text(value, 'displayName', 256, true);
        return;
      case 'externalid':
        externalId = op === 'remove' ? null : text(value, 'externalId', 256);
        return;
      default:
        return; // id, meta, schemas and attributes Countersign does not keep
    }
  };
  for (const op of ops) {
    if (op.path === null) {
      if (op.op === 'remove') throw bad('noTarget', 'remove needs a path');
      for (const [key, v] of Object.entries(op.value as Record<string, unknown>)) apply(op.op, parsePath(key), v);
    } else apply(op.op, parsePath(op.path), op.value);
  }
  return { displayName, externalId, members };
}
