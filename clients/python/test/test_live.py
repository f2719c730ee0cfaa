"""The Python client against a real Countersign server (started by python-client.test.ts,
which passes COUNTERSIGN_TEST_URL, COUNTERSIGN_TEST_AGENT_KEY and COUNTERSIGN_TEST_ADMIN_TOKEN).
Decisions are made by an operator through the HTTP API, as a reviewer's dashboard would."""

from __future__ import annotations

import base64
import http.server
import json
import os
import secrets
import threading
import time
import unittest
import urllib.request
from typing import Any

from countersign import Alternative, Countersign, CountersignError
from countersign import ed25519
from countersign.receipts import load_pem

AUTO = {"action": "block_ip", "confidence": 0.97, "context": {"threatScore": 0.95}}


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run these tests through clients/python/test/python-client.test.ts")
    return value


URL = env("COUNTERSIGN_TEST_URL")
AGENT_KEY = env("COUNTERSIGN_TEST_AGENT_KEY")
ADMIN = env("COUNTERSIGN_TEST_ADMIN_TOKEN")


def admin(path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{URL}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            text = res.read().decode()
            return res.status, json.loads(text) if res.headers.get_content_type() == "application/json" else text
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read().decode())


def server_pem() -> str:
    req = urllib.request.Request(f"{URL}/v1/audit/public-key", headers={"authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return str(res.read().decode())


def pem_of(raw: bytes) -> str:
    der = bytes.fromhex("302a300506032b6570032100") + raw
    return "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"


def pending(host: str, timeout: float = 10.0) -> dict[str, Any]:
    """Waits (test-side polling, as a reviewer's queue would show it) for the pending request of `host`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = admin("/v1/requests?status=pending&limit=500")
        for item in body["items"]:
            if item["args"].get("host") == host:
                found: dict[str, Any] = item
                return found
        time.sleep(0.05)
    raise AssertionError(f"no pending request for {host}")


class Background:
    """Runs a guarded call on a thread, so the test can act as the reviewer meanwhile."""

    def __init__(self, fn: Any, **kwargs: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn: Any, kwargs: dict[str, Any]) -> None:
        try:
            self.result = fn(**kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            self.error = err

    def join(self) -> "Background":
        self.thread.join(30)
        assert not self.thread.is_alive(), "the guarded call never returned"
        return self


class DroppingProxy:
    """A loopback proxy that relays to the server, but drops the connection instead of answering
    the first `drops` creates, after the server has committed them (the lost-answer case)."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.creates = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                req = urllib.request.Request(f"{URL}{self.path}", data=body, method=self.command,
                                             headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as res:
                        status, payload, ctype = res.status, res.read(), res.headers.get("content-type", "")
                except urllib.error.HTTPError as err:
                    status, payload, ctype = err.code, err.read(), err.headers.get("content-type", "")
                if self.command == "POST" and self.path == "/v1/requests":
                    proxy.creates += 1
                    if proxy.drops > 0:
                        proxy.drops -= 1
                        self.close_connection = True
                        self.connection.close()
                        return
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Live(unittest.TestCase):
    pem: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.pem = server_pem()

    def client(self, **kwargs: Any) -> Countersign:
        kwargs.setdefault("audit_public_key", self.pem)
        return Countersign(URL, AGENT_KEY, env={}, decision_timeout=20, **kwargs)

    def test_create_auto_approved_with_a_verified_receipt(self) -> None:
        cs = self.client()
        request = cs.request_approval("block_ip", {"ip": "203.0.113.7"}, confidence=0.97, context={"threatScore": 0.95})
        self.assertEqual(request["status"], "approved")
        self.assertEqual(request["assessment"]["route"], "auto_approve")
        self.assertTrue(request["idempotencyKey"].startswith("sdk-auto-"))
        decision = cs.decision(request["id"], timeout=5)
        self.assertEqual(decision["args"], {"ip": "203.0.113.7"})
        self.assertEqual(decision["receipt"]["keyId"], load_pem(self.pem).key_id)

        ran: list[dict[str, Any]] = []

        @cs.guard("block_ip", confidence=0.97, context={"threatScore": 0.95})
        def block(ip: str) -> str:
            ran.append({"ip": ip})
            return "blocked"

        self.assertEqual(block(ip="203.0.113.8"), "blocked")
        self.assertEqual(ran, [{"ip": "203.0.113.8"}])

    def test_an_approval_is_claimed_once_and_a_replay_never_runs(self) -> None:
        cs = self.client()
        request = cs.request_approval("block_ip", {"ip": "203.0.113.77"}, confidence=0.97, context={"threatScore": 0.95}, idempotency_key="py-claim-once")
        decision = cs.decision(request["id"], timeout=5)
        self.assertEqual(cs.claim(request["id"], decision)["status"], "executing")
        with self.assertRaises(CountersignError) as replay:
            cs.claim(request["id"], decision)
        self.assertEqual(replay.exception.code, "ALREADY_EXECUTED")
        ran: list[str] = []

        @cs.guard("block_ip", confidence=0.97, context={"threatScore": 0.95}, idempotency_key=lambda *a, **kw: "py-claim-once")
        def block(ip: str) -> None:
            ran.append(ip)

        with self.assertRaises(CountersignError) as guarded:
            block(ip="203.0.113.77")
        self.assertEqual(guarded.exception.code, "ALREADY_EXECUTED")
        self.assertEqual(ran, [])

    def test_pending_then_approved_with_modified_args_while_wait_blocks(self) -> None:
        cs = self.client()
        ran: list[dict[str, Any]] = []

        @cs.guard("isolate_host", confidence=0.82, describe=lambda a: f"isolate {a['host']}")
        def isolate(host: str, mode: str = "full") -> str:
            ran.append({"host": host, "mode": mode})
            return f"isolated {host}"

        call = Background(isolate, host="ws-py-1")
        request = pending("ws-py-1")
        self.assertEqual(request["args"], {"host": "ws-py-1", "mode": "full"})
        time.sleep(0.3)  # the call is parked in the long-poll
        self.assertTrue(call.thread.is_alive())
        self.assertEqual(ran, [])
        status, _ = admin(f"/v1/requests/{request['id']}/reviews", {"verdict": "approve", "args": {"host": "ws-py-1", "mode": "network-only"}})
        self.assertEqual(status, 200)
        call.join()
        self.assertIsNone(call.error)
        self.assertEqual(call.result, "isolated ws-py-1")
        self.assertEqual(ran, [{"host": "ws-py-1", "mode": "network-only"}])
        _, after = admin(f"/v1/requests/{request['id']}")
        self.assertEqual(after["status"], "executed")

    def test_a_chosen_alternative_runs_instead(self) -> None:
        cs = self.client()
        ran: list[str] = []
        def run_quarantine(host: str, path: str) -> str:
            ran.append(f"quarantine {host}:{path}")
            return "q"

        quarantine = Alternative("quarantine", "quarantine_file", run=run_quarantine, args=lambda a: {"host": a["host"], "path": "/tmp/payload"})

        @cs.guard("isolate_host", confidence=0.82, alternatives=[quarantine])
        def isolate(host: str) -> str:
            ran.append(f"isolate {host}")
            return "i"

        call = Background(isolate, host="ws-py-alt")
        request = pending("ws-py-alt")
        self.assertEqual(admin(f"/v1/requests/{request['id']}/reviews", {"verdict": "approve", "alternative": "quarantine"})[0], 200)
        call.join()
        self.assertIsNone(call.error)
        self.assertEqual(ran, ["quarantine ws-py-alt:/tmp/payload"])

    def test_rejected_never_runs(self) -> None:
        cs = self.client()
        ran: list[str] = []

        @cs.guard("isolate_host", confidence=0.82)
        def isolate(host: str) -> None:
            ran.append(host)

        call = Background(isolate, host="ws-py-rej")
        request = pending("ws-py-rej")
        self.assertEqual(admin(f"/v1/requests/{request['id']}/reviews", {"verdict": "reject", "reason": "domain controller"})[0], 200)
        call.join()
        self.assertIsInstance(call.error, CountersignError)
        assert isinstance(call.error, CountersignError)
        self.assertEqual(call.error.code, "APPROVAL_REJECTED")
        self.assertIn("domain controller", call.error.message)
        self.assertEqual(ran, [])

    def test_expired_and_wait_timeout_never_run(self) -> None:
        cs = self.client()
        ran: list[str] = []

        @cs.guard("isolate_host", confidence=0.82, timeout_seconds=1)
        def expiring(host: str) -> None:
            ran.append(host)

        with self.assertRaises(CountersignError) as caught:
            expiring(host="ws-py-exp")
        self.assertEqual(caught.exception.code, "APPROVAL_EXPIRED")

        @cs.guard("isolate_host", confidence=0.82, timeout=1.5)
        def impatient(host: str) -> None:
            ran.append(host)

        with self.assertRaises(CountersignError) as timed_out:
            impatient(host="ws-py-wait")
        self.assertEqual(timed_out.exception.code, "WAIT_TIMEOUT")
        self.assertEqual(ran, [])
        _, listing = admin("/v1/requests?action=isolate_host&limit=500")
        withdrawn = [r for r in listing["items"] if r["args"].get("host") == "ws-py-wait"]
        self.assertEqual([r["status"] for r in withdrawn], ["cancelled"])

    def test_wrong_pinned_key_refuses_a_real_approval(self) -> None:
        mallory = pem_of(ed25519.public_key(secrets.token_bytes(32)))
        ran: list[str] = []
        cs = self.client(audit_public_key=mallory)

        @cs.guard("block_ip", confidence=0.97, context={"threatScore": 0.95})
        def block(ip: str) -> None:
            ran.append(ip)

        with self.assertRaises(CountersignError) as caught:
            block(ip="203.0.113.9")
        self.assertEqual(caught.exception.code, "RECEIPT_MISMATCH")
        self.assertRegex(caught.exception.message, r"signed by key [0-9a-f]{16}, not the server's key")
        self.assertEqual(ran, [])

    def test_forged_and_altered_receipts_are_refused(self) -> None:
        cs = self.client()
        request = cs.request_approval("block_ip", {"ip": "203.0.113.10"}, confidence=0.97, context={"threatScore": 0.95})
        real = request["decision"]
        cs.check_receipt(request["id"], real, ("block_ip", {"ip": "203.0.113.10"}))  # the real one holds

        def refused(decision: dict[str, Any], pattern: str, runs: Any = None) -> None:
            with self.assertRaises(CountersignError) as caught:
                cs.check_receipt(request["id"], decision, runs)
            self.assertEqual(caught.exception.code, "RECEIPT_MISMATCH")
            self.assertRegex(caught.exception.message, pattern)

        refused({**real, "args": {"ip": "10.0.0.1"}}, "approved action and args differ")
        refused(real, "does not cover running block_ip", ("block_ip", {"ip": "10.0.0.1"}))
        refused({**real, "receipt": {**real["receipt"], "payloadHash": "0" * 64}}, "signature does not verify")
        refused({k: v for k, v in real.items() if k != "receipt"}, "carries no signed receipt")
        with self.assertRaises(CountersignError) as other:
            cs.check_receipt("req_0000000000000000000000othr", real)
        self.assertRegex(other.exception.message, "signature does not verify|issued for")

        # A receipt signed by another key that claims the server's key id.
        from countersign.receipts import receipt_message

        seed = secrets.token_bytes(32)
        forged = {**real["receipt"]}
        forged["signature"] = base64.b64encode(ed25519.sign(seed, receipt_message(forged))).decode()
        refused({**real, "receipt": forged}, "signature does not verify")

    def test_key_pinned_by_id_and_trust_on_first_use(self) -> None:
        key_id = load_pem(self.pem).key_id
        by_id = self.client(audit_public_key=key_id)
        request = by_id.request_approval("block_ip", {"ip": "203.0.113.11"}, confidence=0.97, context={"threatScore": 0.95})
        by_id.decision(request["id"], timeout=5)
        wrong = self.client(audit_public_key="0123456789abcdef")
        with self.assertRaises(CountersignError) as caught:
            wrong.decision(request["id"], timeout=5)
        self.assertRegex(caught.exception.message, "not the pinned key 0123456789abcdef")

        warnings: list[str] = []
        tofu = Countersign(URL, AGENT_KEY, env={}, on_warning=warnings.append)
        for ip in ("203.0.113.12", "203.0.113.13"):
            tofu.decision(tofu.request_approval("block_ip", {"ip": ip}, confidence=0.97, context={"threatScore": 0.95})["id"], timeout=5)
        self.assertEqual(len(warnings), 1)
        self.assertRegex(warnings[0], "no audit public key is pinned.*first use")
        self.assertEqual(tofu.audit_key().key_id, key_id)

        # Plain http to a host that is not this machine: the key is never fetched.
        remote = Countersign("http://countersign.internal.example:8080", AGENT_KEY, env={})
        with self.assertRaises(CountersignError) as insecure:
            remote.check_receipt(request["id"], request["decision"])
        self.assertRegex(insecure.exception.message, "refusing to fetch the audit public key over plain http")

    def test_a_lost_answer_is_retried_into_the_same_request(self) -> None:
        proxy = DroppingProxy(drops=1)
        try:
            cs = Countersign(proxy.url, AGENT_KEY, env={}, audit_public_key=self.pem)
            request = cs.request_approval("isolate_host", {"host": "ws-py-retry"}, confidence=0.82)
            self.assertEqual(proxy.creates, 2)
            self.assertFalse(request["replayed"])
            _, listing = admin("/v1/requests?action=isolate_host&limit=500")
            filed = [r["id"] for r in listing["items"] if r["args"].get("host") == "ws-py-retry"]
            self.assertEqual(filed, [request["id"]])

            # Without retries, the same loss leaves the caller with an error, though the server committed.
            proxy.drops = 1
            once = Countersign(proxy.url, AGENT_KEY, env={}, audit_public_key=self.pem, retry_attempts=1)
            with self.assertRaises(CountersignError) as caught:
                once.request_approval("isolate_host", {"host": "ws-py-once"}, confidence=0.82)
            self.assertEqual(caught.exception.code, "NETWORK_ERROR")
        finally:
            proxy.close()

    def test_operator_token_is_refused_before_anything_is_sent(self) -> None:
        cases: list[tuple[str | None, dict[str, str]]] = [(ADMIN, {}), (None, {"COUNTERSIGN_TOKEN": ADMIN}), (None, {"COUNTERSIGN_AGENT_KEY": ADMIN})]
        for explicit, environment in cases:
            with self.subTest(list(environment) or "explicit"):
                with self.assertRaises(CountersignError) as caught:
                    Countersign(URL, explicit, env=environment)
                self.assertEqual(caught.exception.code, "UNAUTHENTICATED")
                self.assertIn("agent key", caught.exception.message)
                self.assertNotIn(ADMIN, caught.exception.message)
        self.assertEqual(Countersign(URL, env={"COUNTERSIGN_TOKEN": AGENT_KEY})._key, AGENT_KEY)

    def test_server_errors_keep_their_code(self) -> None:
        cs = self.client()
        with self.assertRaises(CountersignError) as caught:
            cs.request_approval("block_ip", {"ip": "x"}, confidence=7)
        self.assertEqual(caught.exception.code, "VALIDATION_FAILED")
        with self.assertRaises(CountersignError) as missing:
            cs.get("req_00000000000000000000000000")
        self.assertIn(missing.exception.code, ("NOT_FOUND", "BAD_ID"))
        bad_key = Countersign(URL, "csk_wrong", env={})
        with self.assertRaises(CountersignError) as unauth:
            bad_key.request_approval("block_ip", {"ip": "x"})
        self.assertEqual(unauth.exception.code, "UNAUTHENTICATED")


if __name__ == "__main__":
    unittest.main()
