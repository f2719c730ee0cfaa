"""Following the audit key's signed chain after ``countersign audit rotate-key``: the same rules
as core's ``followKeyChain`` (packages/core/src/audit/rotation.ts), used by the TypeScript SDK.

A hand-over from key A to key B names both keys (ids and raw Ed25519 keys), the tree size and
root where A's authority ends and the time, and is signed by BOTH keys over::

    countersign.audit.key-handover/v1\\n<A id> <A key>\\n<B id> <B key>\\n<size>\\n<root>\\n<time>\\n

From the pinned key the statements must form one line A -> B -> C ..., each signed by both of
its keys, never returning to a key, with growing sizes; statements off the line, a fork (two
hand-overs from one key) or a line that does not pass through the pinned key are refused.
Receipts are accepted only from the newest key of the line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any, Mapping, Sequence

from . import ed25519
from .errors import CountersignError
from .receipts import AuditKey

__all__ = ["HANDOVER_ORIGIN", "MAX_HANDOVERS", "handover_message", "key_of_raw", "follow_key_chain"]

HANDOVER_ORIGIN = "countersign.audit.key-handover/v1"
MAX_HANDOVERS = 1000
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_FIELDS = ("fromKeyId", "fromPublicKey", "toKeyId", "toPublicKey", "treeSize", "rootHash", "timestamp", "fromSignature", "toSignature")


def _b64(text: Any, size: int) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == size and base64.b64encode(data).decode("ascii") == text else None


def key_of_raw(raw: bytes) -> AuditKey:
    """The AuditKey of a raw 32-byte Ed25519 public key (its id: SHA-256 of the SPKI, 16 hex digits)."""
    der = _SPKI_PREFIX + raw
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode("ascii") + "\n-----END PUBLIC KEY-----\n"
    return AuditKey(raw=raw, key_id=hashlib.sha256(der).hexdigest()[:16], pem=pem)


def handover_message(h: Mapping[str, Any]) -> bytes:
    return (
        f"{HANDOVER_ORIGIN}\n{h['fromKeyId']} {h['fromPublicKey']}\n{h['toKeyId']} {h['toPublicKey']}\n"
        f"{h['treeSize']}\n{h['rootHash']}\n{h['timestamp']}\n"
    ).encode("utf-8")


def _refuse(why: str) -> None:
    raise CountersignError("RECEIPT_MISMATCH", f"the audit key chain does not hold: {why}; refusing to run")


def _check(h: Any) -> tuple[AuditKey, AuditKey]:
    """One statement on its own: its shape, both keys matching their ids, both signatures."""
    if not isinstance(h, dict) or set(h.keys()) != set(_FIELDS):
        _refuse("a hand-over statement is malformed")
    size = h["treeSize"]
    if (
        not isinstance(h["fromKeyId"], str)
        or not isinstance(h["toKeyId"], str)
        or not _KEY_ID.match(h["fromKeyId"])
        or not _KEY_ID.match(h["toKeyId"])
        or isinstance(size, bool)
        or not isinstance(size, int)
        or size < 0
        or not isinstance(h["timestamp"], str)
        or not _TIME.match(h["timestamp"])
        or _b64(h["rootHash"], 32) is None
    ):
        _refuse("a hand-over statement is malformed")
    raw_from, raw_to = _b64(h["fromPublicKey"], 32), _b64(h["toPublicKey"], 32)
    if raw_from is None or raw_to is None:
        _refuse("a public key in a hand-over is not 32 bytes of base64")
    old, new = key_of_raw(raw_from), key_of_raw(raw_to)  # type: ignore[arg-type]
    if old.key_id != h["fromKeyId"] or new.key_id != h["toKeyId"]:
        _refuse("a key id in a hand-over is not the id of the public key beside it")
    if old.key_id == new.key_id:
        _refuse(f"the hand-over from {old.key_id} is to the same key")
    message = handover_message(h)
    sig_from, sig_to = _b64(h["fromSignature"], 64), _b64(h["toSignature"], 64)
    if sig_from is None or not ed25519.verify(old.raw, message, sig_from):
        _refuse(f"the hand-over from {old.key_id} to {new.key_id} is not signed by the retiring key")
    if sig_to is None or not ed25519.verify(new.raw, message, sig_to):
        _refuse(f"the hand-over from {old.key_id} to {new.key_id} is not signed by the new key")
    return old, new


def follow_key_chain(pinned: AuditKey, handovers: Sequence[Any]) -> list[AuditKey]:
    """The keys of the line through `pinned`, oldest first (its last is the newest key);
    RECEIPT_MISMATCH when the statements do not form one such line."""
    if not isinstance(handovers, (list, tuple)) or len(handovers) > MAX_HANDOVERS:
        _refuse("the served chain is not a list of at most 1000 hand-overs")
    by_from: dict[str, tuple[dict[str, Any], AuditKey, AuditKey]] = {}
    by_to: dict[str, tuple[dict[str, Any], AuditKey, AuditKey]] = {}
    for h in handovers:
        old, new = _check(h)
        if old.key_id in by_from:
            _refuse(f"two hand-overs from key {old.key_id}: the chain forks")
        if new.key_id in by_to:
            _refuse(f"two hand-overs to key {new.key_id}: a key was handed back to")
        by_from[old.key_id] = (h, old, new)
        by_to[new.key_id] = (h, old, new)
    # Back to the first key, then forward, so the whole line is in order.
    first = pinned
    seen = {first.key_id}
    while first.key_id in by_to:
        first = by_to[first.key_id][1]
        if first.key_id in seen:
            _refuse(f"the hand-overs return to key {first.key_id}")
        seen.add(first.key_id)
    line: list[AuditKey] = []
    used: set[str] = set()
    current = first
    after = -1
    while True:
        if current.key_id in used:
            _refuse(f"the hand-overs return to key {current.key_id}")
        used.add(current.key_id)
        line.append(current)
        step = by_from.get(current.key_id)
        if step is None:
            break
        h, _, new = step
        if h["treeSize"] < after or (len(line) > 1 and h["treeSize"] == after):
            _refuse(f"the hand-over from {current.key_id} at size {h['treeSize']} does not come after the one to it (size {after})")
        after = h["treeSize"]
        current = new
    if pinned.key_id not in used:
        _refuse(f"the hand-overs do not lead from the pinned key {pinned.key_id}")
    if len(used) != len(by_from) + 1:
        _refuse(f"some hand-overs are not on the line through the pinned key {pinned.key_id}")
    return line
