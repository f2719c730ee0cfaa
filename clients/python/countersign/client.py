"""The Countersign agent client over HTTP: propose an action, wait for the human decision (a
long-poll that wakes when the decision commits, never a sleep loop), and run only what was
approved, checked against the server's signed receipt. It mirrors the TypeScript SDK
(packages/client): the same credential rules, the same receipt checks, the same error codes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.client
import inspect
import ipaddress
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar, Union, cast

from .canonical import canonical_json
from .errors import CountersignError
from .key_chain import follow_key_chain, key_of_raw
from .receipts import AuditKey, check_receipt, load_pem

__all__ = ["Countersign", "Alternative", "Request", "Decision"]

log = logging.getLogger("countersign")

Request = dict[str, Any]
"""A request as the server sends it (camelCase keys: ``id``, ``status``, ``assessment``, ``decision`` …)."""
Decision = dict[str, Any]
"""A decision: ``outcome``, ``decidedBy``, ``deciders``, ``reason``, ``at``, ``action``, ``args``, ``alternative``, ``modified``, ``receipt``."""

R = TypeVar("R")
ArgsOf = Union[Mapping[str, Any], Callable[[dict[str, Any]], Mapping[str, Any]], None]

AGENT_KEY_PREFIX = "csk_"
OPERATOR_TOKEN_PREFIX = "cso_"
AUTO_IDEMPOTENCY_PREFIX = "sdk-auto-"
LONG_POLL_CHUNK_SECONDS = 60
MAX_WAIT_SECONDS = 300


# ---- credentials and pins -------------------------------------------------------------------


def _refuse_operator_token(where: str) -> CountersignError:
    return CountersignError(
        "UNAUTHENTICATED",
        f"{where} is an operator token (cso_…), a reviewer's credential; agent-side code must use an agent key (csk_…): "
        "pass agent_key or set COUNTERSIGN_AGENT_KEY (create one with `countersign keys create` or use the bootstrap agent key)",
        {"source": where},
    )


def resolve_agent_key(explicit: str | None, env: Mapping[str, str]) -> str:
    """The agent key to send: the explicit one, COUNTERSIGN_AGENT_KEY, or a csk_ key left in
    COUNTERSIGN_TOKEN. An operator token is refused wherever it came from."""
    if explicit:
        if explicit.startswith(OPERATOR_TOKEN_PREFIX):
            raise _refuse_operator_token("the agent_key passed")
        return explicit
    agent_key = env.get("COUNTERSIGN_AGENT_KEY", "").strip()
    if agent_key:
        if agent_key.startswith(OPERATOR_TOKEN_PREFIX):
            raise _refuse_operator_token("COUNTERSIGN_AGENT_KEY")
        return agent_key
    token = env.get("COUNTERSIGN_TOKEN", "").strip()
    if token.startswith(AGENT_KEY_PREFIX):
        return token
    if token.startswith(OPERATOR_TOKEN_PREFIX):
        raise _refuse_operator_token("COUNTERSIGN_TOKEN (the CLI's operator token)")
    raise CountersignError("UNAUTHENTICATED", "no agent key: pass agent_key or set COUNTERSIGN_AGENT_KEY (csk_…)")


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    # Only localhost itself (the hosts file): *.localhost is loopback by RFC 6761, but the system
    # resolver may ask DNS for it, so evil.localhost can be any address.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_trusted_key_transport(url: str) -> bool:
    """TLS, or this machine: the only places a key may be fetched from without a pin."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https":
        return True
    return parsed.scheme == "http" and _is_loopback(parsed.hostname or "")


def _raw_key(text: Any) -> bytes | None:
    """32 bytes of canonical base64, or None."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 and base64.b64encode(raw).decode("ascii") == text else None


def _is_key_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdefABCDEF" for c in text)


# ---- guard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alternative(Generic[R]):
    """Something a reviewer may choose instead: its own action, args (fixed, or derived from the
    guarded call's args) and the function that runs it with its approved args as keywords."""

    name: str
    action: str
    run: Callable[..., R]
    args: ArgsOf = None
    description: str | None = None


def _json_object(value: Any, what: str) -> dict[str, Any]:
    try:
        copy = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise CountersignError("VALIDATION_FAILED", f"{what} must be a JSON object: {err}") from None
    if not isinstance(copy, dict):
        raise CountersignError("VALIDATION_FAILED", f"{what} must be a JSON object")
    return copy


def _outcome_of(request: Request) -> Decision:
    """The decision of a decided request, or the error that stands for it (as the TS SDK's outcomeOf)."""
    rid, status, action = request.get("id"), request.get("status"), request.get("action")
    if status == "pending":
        raise CountersignError("WAIT_TIMEOUT", f"request {rid} is still pending", {"requestId": rid, "status": status})
    decision = request.get("decision")
    if not isinstance(decision, dict):
        raise CountersignError("INTERNAL", f"request {rid} is {status} but carries no decision", {"requestId": rid})
    details = {"requestId": rid, "decision": decision}
    outcome = decision.get("outcome")
    if outcome == "approved":
        return decision
    if outcome == "rejected":
        names = ", ".join(str(d.get("name")) for d in decision.get("deciders") or [])
        by = "blocked by policy" if decision.get("decidedBy") == "policy" else f"rejected by {names or 'a reviewer'}"
        raise CountersignError("APPROVAL_REJECTED", f"{action} was {by}: {decision.get('reason') or 'no reason given'}", details)
    if outcome == "expired":
        raise CountersignError(
            "APPROVAL_EXPIRED", f"{action} expired without approval: {decision.get('reason') or 'no decision before the deadline'}", details
        )
    if outcome == "cancelled":
        reason = decision.get("reason")
        raise CountersignError("APPROVAL_CANCELLED", f"{action} was cancelled{': ' + reason if reason else ''}", details)
    raise CountersignError("INTERNAL", f"request {rid} has an unknown outcome {outcome!r}", details)


# ---- the client -----------------------------------------------------------------------------


class Countersign:
    """A client for one Countersign server, as one agent.

    >>> cs = Countersign("http://127.0.0.1:8080", "csk_…", audit_public_key="audit.pem")
    >>> @cs.guard("isolate_host", confidence=0.82)
    ... def isolate(host: str) -> str: ...
    >>> isolate(host="ws-042")  # runs with what was approved, or raises APPROVAL_REJECTED …

    ``url`` defaults to COUNTERSIGN_URL (else http://127.0.0.1:8080); ``agent_key`` to
    COUNTERSIGN_AGENT_KEY (or a csk_ key in COUNTERSIGN_TOKEN); ``audit_public_key`` to
    COUNTERSIGN_AUDIT_PUBLIC_KEY. The key pin is PEM text, a path to a PEM file, or the key's
    16-hex-digit id. Without one, the server's key is trusted on first use, fetched only over
    https or loopback, said once through ``on_warning`` and kept for this client's life.
    """

    def __init__(
        self,
        url: str | None = None,
        agent_key: str | None = None,
        *,
        audit_public_key: str | None = None,
        timeout: float = 30.0,
        decision_timeout: float = 15 * 60.0,
        verify_receipts: bool = True,
        retry_attempts: int = 4,
        on_warning: Callable[[str], None] | None = None,
        on_report_error: Callable[[BaseException, str], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        base = (url or env.get("COUNTERSIGN_URL") or "http://127.0.0.1:8080").rstrip("/")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise CountersignError("VALIDATION_FAILED", f'server url "{base}" must be an http: or https: URL')
        self.url = base
        self._key = resolve_agent_key(agent_key, env)
        self.timeout = timeout
        self.decision_timeout = decision_timeout
        self.verify_receipts = verify_receipts
        self.retry_attempts = max(1, min(10, retry_attempts))
        self._on_warning = on_warning or log.warning
        self._on_report_error = on_report_error or (
            lambda err, rid: log.warning("countersign: could not report the execution of %s: %s", rid, err)
        )
        self._pin = (audit_public_key if audit_public_key is not None else env.get("COUNTERSIGN_AUDIT_PUBLIC_KEY", "")).strip()
        self._audit_key: AuditKey | None = None
        # After a key rotation: the hand-overs learned from GET /v1/audit/keys and the newest key they lead to.
        self._chain: list[Any] | None = None
        self._newest: AuditKey | None = None
        self._warned_tofu = False

    # -- HTTP --

    def _send(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, str]:
        """One exchange: (status, body text); NETWORK_ERROR when no answer arrived."""
        data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        headers = {"authorization": f"Bearer {self._key}", "accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as res:
                return res.status, res.read().decode("utf-8")
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read().decode("utf-8", "replace")
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CountersignError("NETWORK_ERROR", f"{method} {self.url}{path} failed: {reason}") from None

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        status, text = self._send(method, path, body, timeout)
        if not 200 <= status < 300:
            raise _error_from_response(status, text)
        return status, _parse_json(text)

    def _request_of(self, value: Any, expect_id: str | None = None) -> Request:
        if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not isinstance(value.get("status"), str):
            raise CountersignError("INTERNAL", "the server sent a request in an unexpected shape")
        if expect_id is not None and value["id"] != expect_id:
            raise CountersignError("RECEIPT_MISMATCH", f"asked for request {expect_id}, the server answered with {value['id']}")
        return value

    # -- the agent's verbs --

    def request_approval(
        self,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        description: str | None = None,
        confidence: float | None = None,
        risk_level: str | None = None,
        context: Mapping[str, Any] | None = None,
        alternatives: Sequence[Mapping[str, Any]] | None = None,
        approvers: Sequence[Mapping[str, Any]] | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Request:
        """Proposes an action (``POST /v1/requests``) and returns the request: decided at once
        when the policy auto-approved or blocked it, else ``pending`` (then :meth:`wait`).

        A 503 or a lost answer is retried with back-off under one idempotency key (the
        caller's, or one made here), so a retry never files a second request. The returned dict
        also carries ``replayed`` (client-side): True when the caller's own idempotency key
        matched an earlier request.
        """
        if not isinstance(action, str) or not action:
            raise CountersignError("VALIDATION_FAILED", "request_approval needs an action")
        body: dict[str, Any] = {"action": action, "args": _json_object(args or {}, "args")}
        for key, value in (
            ("description", description),
            ("confidence", confidence),
            ("riskLevel", risk_level),
            ("context", context),
            ("alternatives", alternatives),
            ("approvers", approvers),
            ("timeoutSeconds", timeout_seconds),
        ):
            if value is not None:
                body[key] = value
        auto = idempotency_key is None
        body["idempotencyKey"] = f"{AUTO_IDEMPOTENCY_PREFIX}{uuid.uuid4()}" if auto else idempotency_key
        status, text = 0, ""
        for attempt in range(1, self.retry_attempts + 1):
            last = attempt == self.retry_attempts
            try:
                status, text = self._send("POST", "/v1/requests", body)
            except CountersignError:
                if last:
                    raise
                time.sleep(random.random() * min(5.0, 0.2 * 2 ** (attempt - 1)))
                continue
            if status == 503 and not last:
                time.sleep(random.random() * min(5.0, 0.2 * 2 ** (attempt - 1)))
                continue
            break
        if not 200 <= status < 300:
            raise _error_from_response(status, text)
        request = self._request_of(_parse_json(text))
        if request.get("action") != action:
            raise CountersignError("RECEIPT_MISMATCH", f"proposed {action}, the server filed {request.get('action')}", {"requestId": request["id"]})
        # The server echoes the key it was filed with: an answer without it, or with another, is
        # some other request (replayed or forged), never this one.
        if request.get("idempotencyKey") != body["idempotencyKey"]:
            raise CountersignError("RECEIPT_MISMATCH", "the server answered with a request filed under another idempotency key (or none)")
        request["replayed"] = status == 200 and not auto
        return request

    def get(self, request_id: str) -> Request:
        """The request's current state."""
        _, value = self._call("GET", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}")
        return self._request_of(value, request_id)

    def wait(self, request_id: str, timeout: float | None = None) -> Request:
        """Waits until the request leaves ``pending`` and returns it, whatever the outcome.

        Long-polls ``GET /v1/requests/:id?waitSeconds=N`` in chunks of at most 60 s until
        ``timeout`` seconds (default: ``decision_timeout``) have passed, then raises
        WAIT_TIMEOUT. Transient failures (NETWORK_ERROR, STORE_UNAVAILABLE) are retried.
        """
        total = self.decision_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + total
        path = f"/v1/requests/{urllib.parse.quote(request_id, safe='')}"
        request = self.get(request_id)
        failures = 0
        while request["status"] == "pending":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait_seconds = int(min(LONG_POLL_CHUNK_SECONDS, max(1, remaining // 1)))
            try:
                _, value = self._call("GET", f"{path}?waitSeconds={wait_seconds}", timeout=self.timeout + wait_seconds)
                request = self._request_of(value, request_id)
                failures = 0
            except CountersignError as err:
                if err.code not in ("NETWORK_ERROR", "STORE_UNAVAILABLE") or time.monotonic() >= deadline:
                    raise
                failures += 1
                time.sleep(max(0.0, min(5.0, 0.25 * 2 ** (failures - 1), deadline - time.monotonic())))
        if request["status"] == "pending":
            raise CountersignError(
                "WAIT_TIMEOUT",
                f"no decision on request {request_id} ({request.get('action')}) within {total:g} s; it is still pending",
                {"requestId": request_id, "timeout": total, "status": "pending"},
            )
        return request

    def decision(self, request_id: str, timeout: float | None = None) -> Decision:
        """The decision once there is one, its receipt checked: returns it when approved,
        raises APPROVAL_REJECTED / APPROVAL_EXPIRED / APPROVAL_CANCELLED / WAIT_TIMEOUT."""
        decision = _outcome_of(self.wait(request_id, timeout))
        self.check_receipt(request_id, decision)
        return decision

    def claim(self, request_id: str, decision: Decision) -> Request:
        """Claims the approval once, before anything runs ({status: started, receipt} -> executing)."""
        receipt = decision.get("receipt")
        if not receipt:
            raise CountersignError("RECEIPT_MISMATCH", f"the decision on {request_id} carries no signed receipt to claim it with; refusing to run")
        _, value = self._call("POST", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}/execution", {"status": "started", "receipt": receipt})
        claimed = self._request_of(value, request_id)
        # Only a claim the server confirms (the request is now `executing`) lets anything run: an
        # answer still `approved` (a server that does not record claims, or something in between
        # rewriting the answer) means the approval is not ours alone, so nothing runs.
        if claimed["status"] != "executing":
            raise CountersignError(
                "RECEIPT_MISMATCH",
                f"claiming {request_id} was answered with status {claimed['status']!r}, not 'executing'; refusing to run",
                {"requestId": request_id, "status": claimed["status"]},
            )
        return claimed

    def report_execution(self, request_id: str, status: str, *, result: Any = None, error: str | None = None) -> Request:
        """Closes the record: ``succeeded`` (with an optional JSON ``result``) or ``failed``."""
        body: dict[str, Any] = {"status": status}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error[:2000]
        _, value = self._call("POST", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}/execution", body)
        return self._request_of(value, request_id)

    def cancel(self, request_id: str, reason: str | None = None) -> Request:
        """Withdraws a pending request."""
        _, value = self._call("POST", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}/cancel", {} if reason is None else {"reason": reason})
        return self._request_of(value, request_id)

    # -- receipts --

    def audit_key(self) -> AuditKey:
        """The key receipts are checked with: the pinned one, or the server's on first use (then kept)."""
        if self._audit_key is not None:
            return self._audit_key
        pin = self._pin
        if "-----BEGIN" in pin:
            key = load_pem(pin)
        elif pin and not _is_key_id(pin):
            try:
                with open(pin, encoding="utf-8") as f:
                    key = load_pem(f.read())
            except OSError as err:
                raise CountersignError(
                    "VALIDATION_FAILED",
                    f'the pinned audit public key "{pin}" is neither PEM text, a 16-hex-digit key id, nor a readable file: {err}',
                ) from None
        else:
            key = load_pem(self._fetch_key())
            if pin and key.key_id != pin.lower():
                # After a rotation the server serves its newest key: the pinned id's own key is in the signed chain.
                earlier = self._key_in_chain(pin.lower())
                if earlier is None:
                    raise CountersignError("RECEIPT_MISMATCH", f"the server served key {key.key_id}, not the pinned key {pin.lower()}")
                key = earlier
            if not pin and not self._warned_tofu:
                self._warned_tofu = True
                self._on_warning(
                    f"countersign: no audit public key is pinned, so decision receipts are checked with the key {self.url} "
                    f"served on first use ({key.key_id}); this client keeps that key and refuses any other. "
                    "Pin it with audit_public_key or COUNTERSIGN_AUDIT_PUBLIC_KEY (PEM, a file, or its key id)."
                )
        self._audit_key = key
        return key

    def _key_in_chain(self, key_id: str) -> AuditKey | None:
        """The public key a hand-over statement gives for `key_id` (it must hash to the id), or None."""
        status, text = self._send("GET", "/v1/audit/keys")
        body = _parse_json(text) if status == 200 else None
        handovers = body.get("handovers") if isinstance(body, dict) else None
        for h in handovers if isinstance(handovers, list) else []:
            for side in ("from", "to"):
                raw = _raw_key(h.get(f"{side}PublicKey")) if isinstance(h, dict) and h.get(f"{side}KeyId") == key_id else None
                if raw is not None and key_of_raw(raw).key_id == key_id:
                    return key_of_raw(raw)
        return None

    def _fetch_key(self) -> str:
        if not is_trusted_key_transport(self.url):
            raise CountersignError(
                "RECEIPT_MISMATCH",
                f"refusing to fetch the audit public key over plain http from {urllib.parse.urlsplit(self.url).netloc}: "
                "anyone on the path could substitute their own; use https, or pin the key "
                "(audit_public_key or COUNTERSIGN_AUDIT_PUBLIC_KEY: PEM text, a file, or its key id)",
            )
        status, text = self._send("GET", "/v1/audit/public-key")
        if status != 200:
            raise _error_from_response(status, text)
        return text

    def check_receipt(self, request_id: str, decision: Decision, runs: tuple[str, Mapping[str, Any]] | None = None) -> None:
        """RECEIPT_MISMATCH unless the decision's signed receipt holds (and covers `runs`)."""
        if not self.verify_receipts:
            return
        try:
            key = self.audit_key()
        except CountersignError as err:
            raise CountersignError(
                "RECEIPT_MISMATCH",
                f"cannot get the server's audit public key to check the receipt of {request_id}: {err.message}; refusing to run",
                {"requestId": request_id},
            ) from None
        receipt = decision.get("receipt")
        signed_by = receipt.get("keyId") if isinstance(receipt, dict) else None
        if isinstance(signed_by, str) and (signed_by != key.key_id or self._newest is not None):
            key = self._key_after_rotation(key, signed_by, request_id)
        check_receipt(key, request_id, decision, runs)

    def _key_after_rotation(self, pinned: AuditKey, signed_by: str, request_id: str) -> AuditKey:
        """The newest key of the signed chain from the pinned key, when it signed this receipt
        (the TypeScript SDK's rules, client/src/key-chain.ts): fetched over any transport (every
        step is signed by both its keys), learned once, and every later chain must keep what was
        learned as its prefix; a retired key's receipt is refused once the chain is known."""

        def refuse(why: str) -> AuditKey:
            raise CountersignError("RECEIPT_MISMATCH", f"decision receipt for {request_id}: {why}; refusing to run", {"requestId": request_id})

        if self._newest is not None and signed_by == self._newest.key_id:
            return self._newest
        status, text = self._send("GET", "/v1/audit/keys")
        if status == 404 and self._chain is None:
            return pinned  # a server from before key rotation: no chain, the pinned key only
        if status != 200:
            return refuse(f"the audit key chain could not be read (HTTP {status})")
        body = _parse_json(text)
        handovers = body.get("handovers") if isinstance(body, dict) else None
        try:
            line = follow_key_chain(pinned, handovers if isinstance(handovers, list) else [None])
        except CountersignError as err:
            return refuse(err.message)
        if self._chain is not None and handovers[: len(self._chain)] != self._chain:  # type: ignore[index]
            return refuse("the served key chain does not extend the one this client learned: a fork")
        self._chain = list(handovers)  # type: ignore[arg-type]
        self._newest = line[-1] if len(line) > 1 else None
        newest = line[-1]
        if signed_by != newest.key_id:
            known = any(k.key_id == signed_by for k in line)
            if known:
                return refuse(f"signed by key {signed_by}, which was handed over to a newer key: a retired key signs no receipt")
            return refuse(f"signed by key {signed_by}, not the server's key {pinned.key_id} (pinned), nor a key its signed chain hands over to")
        return newest

    # -- guard --

    def guard(
        self,
        action: str,
        *,
        describe: Callable[[dict[str, Any]], str] | None = None,
        confidence: float | None = None,
        risk_level: str | None = None,
        context: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
        alternatives: Sequence[Alternative[Any]] = (),
        approvers: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: Callable[[dict[str, Any]], str] | None = None,
    ) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """A decorator: each call of the function asks first, waits, and runs only what was
        approved (the args as asked, the reviewer's modified args, or the alternative they
        chose), after checking that the signed receipt covers exactly that; it then reports
        how it went. Rejection, expiry and cancellation raise APPROVAL_REJECTED /
        APPROVAL_EXPIRED / APPROVAL_CANCELLED and nothing runs. The function's parameters are
        the request's args, so call it with JSON values and it is run with keywords.
        """
        if not action:
            raise CountersignError("VALIDATION_FAILED", "guard() needs an action")
        names = [a.name for a in alternatives]
        if len(set(names)) != len(names):
            raise CountersignError("VALIDATION_FAILED", "guard(): duplicate alternative names")

        def decorate(fn: Callable[..., R]) -> Callable[..., R]:
            signature = inspect.signature(fn)
            for param in signature.parameters.values():
                if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
                    raise CountersignError("VALIDATION_FAILED", f"guard(): {fn.__name__} must take its arguments by name ({param.name})")

            @functools.wraps(fn)
            def guarded(*a: Any, **kw: Any) -> R:
                bound = signature.bind(*a, **kw)
                bound.apply_defaults()
                raw = dict(bound.arguments)
                for param in signature.parameters.values():
                    if param.kind is param.VAR_KEYWORD:
                        raw.update(raw.pop(param.name, {}))
                sent = _json_object(raw, "guarded args")
                return call(fn, sent)

            return guarded

        def offered(sent: dict[str, Any]) -> list[tuple[Alternative[Any], dict[str, Any]]]:
            out = []
            for alt in alternatives:
                value = alt.args(sent) if callable(alt.args) else (alt.args or {})
                out.append((alt, _json_object(value, f"alternative {alt.name} args")))
            return out

        def call(fn: Callable[..., R], sent: dict[str, Any]) -> R:
            offers = offered(sent)
            request = self.request_approval(
                action,
                sent,
                description=describe(sent) if describe else None,
                confidence=confidence,
                risk_level=risk_level,
                context=context(sent) if callable(context) else context,
                alternatives=[
                    {"name": alt.name, "action": alt.action, "args": args, **({"description": alt.description} if alt.description else {})}
                    for alt, args in offers
                ]
                or None,
                approvers=approvers,
                timeout_seconds=timeout_seconds,
                idempotency_key=idempotency_key(sent) if idempotency_key else None,
            )
            rid = request["id"]
            if request.get("replayed") and request["status"] in ("executed", "execution_failed"):
                raise CountersignError(
                    "ALREADY_DECIDED",
                    f"request {rid} (idempotency key reused) already ran: {request['status']}",
                    {"requestId": rid, "status": request["status"]},
                )
            decision = self._await_decision(request, timeout)
            try:
                run_action, run_args, run = _plan(decision, action, sent, offers, fn, rid)
                self.check_receipt(rid, decision, (run_action, run_args))
            except CountersignError:
                # Refused here, nothing is claimed: the approval stays unclaimed and runs out.
                raise
            # Claimed once before anything runs: a refused claim (ALREADY_EXECUTED, RECEIPT_EXPIRED, …) raises, nothing runs.
            self.claim(rid, decision)
            try:
                # An alternative's result stands in for the function's: the caller asked for either.
                result = cast(R, run())
            except BaseException as err:
                self._report(rid, "failed", error=f"{type(err).__name__}: {err}")
                raise
            self._report(rid, "succeeded", result=_json_safe(result))
            return result

        return decorate

    def _await_decision(self, request: Request, timeout: float | None) -> Decision:
        rid = request["id"]
        try:
            return _outcome_of(request if request["status"] != "pending" else self.wait(rid, timeout))
        except CountersignError as err:
            if err.code != "WAIT_TIMEOUT":
                raise
            # Nobody will run it once we stop waiting: withdraw it, so it is not approved into the void.
            try:
                self.cancel(rid, "the agent stopped waiting")
            except CountersignError as cancel_err:
                if cancel_err.code == "ALREADY_DECIDED":
                    return _outcome_of(self.get(rid))
            raise

    def _report(self, rid: str, status: str, *, result: Any = None, error: str | None = None) -> None:
        try:
            self.report_execution(rid, status, result=result, error=error)
        except CountersignError as err:
            self._on_report_error(err, rid)


def _plan(
    decision: Decision,
    action: str,
    sent: dict[str, Any],
    offers: list[tuple[Alternative[Any], dict[str, Any]]],
    fn: Callable[..., R],
    rid: str,
) -> tuple[str, dict[str, Any], Callable[[], Any]]:
    """What may run, decided from what this process offered, never from what the server names."""

    def mismatch(message: str) -> CountersignError:
        return CountersignError("RECEIPT_MISMATCH", f"{message}; refusing to run", {"requestId": rid, "decision": decision})

    if decision.get("outcome") != "approved":
        raise mismatch(f"decision is {decision.get('outcome')}")
    args = decision.get("args")
    if args is not None and not isinstance(args, dict):
        raise mismatch("approved args are not an object")
    chosen = decision.get("alternative")
    if chosen is not None:
        match = next(((alt, a) for alt, a in offers if alt.name == chosen), None)
        if match is None:
            raise mismatch(f'the approved alternative "{chosen}" was never offered')
        alt, offered_args = match
        if decision.get("action") != alt.action:
            raise mismatch(f'alternative "{alt.name}" is {alt.action}, the decision says {decision.get("action")}')
        run_args = offered_args if args is None else args
        if canonical_json(run_args) != canonical_json(offered_args):
            raise mismatch(f'alternative "{alt.name}" came back with other args')
        return alt.action, run_args, lambda: alt.run(**run_args)
    if decision.get("action") != action:
        raise mismatch(f"guarded {action}, the decision says {decision.get('action')}")
    run_args = sent if args is None else args
    if not decision.get("modified") and canonical_json(run_args) != canonical_json(sent):
        raise mismatch("the decision changed the args without marking them modified")
    return action, run_args, lambda: fn(**run_args)


def _json_safe(value: Any) -> Any:
    try:
        text = json.dumps(value, allow_nan=False, default=str)
    except (TypeError, ValueError):
        return {"unserializable": True, "type": type(value).__name__}
    if len(text) > 16_384:
        return {"truncated": True, "chars": len(text), "preview": text[:1000]}
    return json.loads(text)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise CountersignError("INTERNAL", "the server sent a response that is not JSON", {"body": text[:200]}) from None


def _error_from_response(status: int, text: str) -> CountersignError:
    """A non-2xx answer as a CountersignError: the server's code kept; another body classified by status."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str):
        return CountersignError(error["code"], error["message"], error.get("details"))
    snippet = " ".join(text.split())[:200]
    code = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 413: "BODY_TOO_LARGE", 502: "NETWORK_ERROR", 503: "NETWORK_ERROR", 504: "NETWORK_ERROR"}.get(
        status, "INTERNAL"
    )
    return CountersignError(code, f"HTTP {status} without a Countersign error body{': ' + snippet if snippet else ''}", {"status": status})
