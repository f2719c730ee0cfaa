"""Decision receipts, checked before anything runs: the same checks, in the same order, as the
TypeScript SDK's ``ReceiptVerifier`` (packages/client/src/receipts.ts).

The server signs every decision with its audit key (Ed25519) over::

    "countersign.receipt/v1\\n" + canonical JSON of
    {version, requestId, outcome, decidedBy, deciders, decidedAt, payloadHash, keyId}

where ``payloadHash`` is the hex SHA-256 of the canonical JSON of the approved
``{action, args}`` and ``keyId`` the first 16 hex digits of the SHA-256 of the key's
SubjectPublicKeyInfo. A forged, altered or replayed decision therefore fails here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

from . import ed25519
from .canonical import canonical_json
from .errors import CountersignError

__all__ = ["AuditKey", "load_pem", "payload_hash", "receipt_message", "check_receipt"]

RECEIPT_ORIGIN = "countersign.receipt/v1"
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*?)-----END PUBLIC KEY-----")


@dataclass(frozen=True)
class AuditKey:
    """An Ed25519 public key and its Countersign key id."""

    raw: bytes
    key_id: str
    pem: str


def _strict_b64(text: str) -> bytes | None:
    """Standard padded base64, or None unless `text` is the one canonical spelling of its bytes."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == text else None


def load_pem(pem: str) -> AuditKey:
    """Reads a PEM "PUBLIC KEY" holding an Ed25519 key; VALIDATION_FAILED otherwise."""
    match = _PEM.search(pem)
    der = _strict_b64(re.sub(r"\s+", "", match.group(1))) if match else None
    if der is None:
        raise CountersignError("VALIDATION_FAILED", 'the audit public key is not a PEM "PUBLIC KEY"')
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise CountersignError("VALIDATION_FAILED", "the audit public key is not an Ed25519 key")
    return AuditKey(raw=der[12:], key_id=hashlib.sha256(der).hexdigest()[:16], pem=pem)


def payload_hash(action: str, args: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``{action, args}``: what an approval lets run."""
    return hashlib.sha256(canonical_json({"action": action, "args": dict(args)}).encode("utf-8")).hexdigest()


def _actors(value: Any) -> list[dict[str, Any]]:
    # The TypeScript SDK reads deciders through its schema, which keeps exactly these fields.
    if not isinstance(value, list):
        return []
    return [{"type": d.get("type"), "id": d.get("id"), "name": d.get("name")} for d in value if isinstance(d, dict)]


def receipt_message(receipt: Mapping[str, Any]) -> bytes:
    body = {
        "version": receipt.get("version"),
        "requestId": receipt.get("requestId"),
        "outcome": receipt.get("outcome"),
        "decidedBy": receipt.get("decidedBy"),
        "deciders": _actors(receipt.get("deciders")),
        "decidedAt": receipt.get("decidedAt"),
        "payloadHash": receipt.get("payloadHash"),
        "keyId": receipt.get("keyId"),
    }
    # Version 2 (a runnable approval) also signs the nonce and expiry it is claimed with, once.
    # A body whose fields do not fit its version is refused, never verified with fields unsigned.
    has_claim = "nonce" in receipt or "expiresAt" in receipt
    if receipt.get("version") == 2:
        nonce, expires = receipt.get("nonce"), receipt.get("expiresAt")
        if not isinstance(nonce, str) or not nonce or not isinstance(expires, str) or not expires:
            raise ValueError("a version 2 receipt needs its nonce and expiresAt")
        body["nonce"] = nonce
        body["expiresAt"] = expires
    elif has_claim:
        raise ValueError("a version 1 receipt carries nonce or expiresAt, which version 1 does not sign")
    return f"{RECEIPT_ORIGIN}\n{canonical_json(body)}".encode("utf-8")


def check_receipt(
    key: AuditKey,
    request_id: str,
    decision: Mapping[str, Any],
    runs: tuple[str, Mapping[str, Any]] | None = None,
) -> None:
    """Raises RECEIPT_MISMATCH unless `decision` carries a receipt signed by `key` for
    `request_id` whose facts match the decision and, with `runs` = (action, args), whose
    payload hash is exactly that action with those args."""

    def refuse(why: str) -> None:
        raise CountersignError(
            "RECEIPT_MISMATCH",
            f"decision receipt for {request_id}: {why}; refusing to run",
            {"requestId": request_id, "decision": dict(decision)},
        )

    receipt = decision.get("receipt")
    if not isinstance(receipt, dict):
        return refuse("the decision carries no signed receipt")
    if receipt.get("keyId") != key.key_id:
        refuse(f"signed by key {receipt.get('keyId')}, not the server's key {key.key_id}")
    signature = receipt.get("signature")
    sig = _strict_b64(signature) if isinstance(signature, str) else None
    try:
        message = receipt_message(receipt)
    except ValueError as err:
        refuse(str(err))
    if sig is None or not ed25519.verify(key.raw, message, sig):
        refuse("the signature does not verify")
    if receipt.get("requestId") != request_id:
        refuse(f"it was issued for {receipt.get('requestId')}")
    if (
        receipt.get("outcome") != decision.get("outcome")
        or receipt.get("decidedBy") != decision.get("decidedBy")
        or receipt.get("decidedAt") != decision.get("at")
    ):
        refuse("the decision differs from what was signed")

    def ids(actors: Any) -> str:
        return ",".join(f"{a['type']}:{a['id']}" for a in _actors(actors))

    if ids(receipt.get("deciders")) != ids(decision.get("deciders")):
        refuse("the deciders differ from the signed ones")
    if decision.get("outcome") == "approved":
        action, args = decision.get("action"), decision.get("args")
        if not isinstance(action, str) or not isinstance(args, dict):
            refuse("an approval without an action and args")
        elif receipt.get("payloadHash") != payload_hash(action, args):
            refuse("the approved action and args differ from the signed ones")
    if runs is not None:
        if receipt.get("outcome") != "approved":
            refuse(f"the signed outcome is {receipt.get('outcome')}")
        if receipt.get("payloadHash") != payload_hash(runs[0], runs[1]):
            refuse(f"it does not cover running {runs[0]} with these args")
