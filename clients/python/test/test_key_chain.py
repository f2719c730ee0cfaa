"""The Python client follows the audit key's signed chain after a rotation, by the TypeScript
SDK's rules, and refuses every forged or bent chain (no server needed: the server's answers are
stubbed, the keys are made here and signed with the test-only Ed25519 signer)."""

from __future__ import annotations

import base64
import copy
import json
import unittest
from pathlib import Path
from typing import Any

from countersign import CountersignError
from countersign import ed25519
from countersign.client import Countersign
from countersign.key_chain import follow_key_chain, handover_message, key_of_raw
from countersign.receipts import receipt_message

ROOT = base64.b64encode(bytes(32)).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Key:
    def __init__(self, n: int) -> None:
        self.seed = bytes([n]) * 32
        self.audit = key_of_raw(ed25519.public_key(self.seed))
        self.id = self.audit.key_id

    def sign(self, message: bytes) -> str:
        return b64(ed25519.sign(self.seed, message))


def handover(a: Key, b: Key, size: int, *, signer_a: Key | None = None, signer_b: Key | None = None) -> dict[str, Any]:
    body = {
        "fromKeyId": a.id,
        "fromPublicKey": b64(a.audit.raw),
        "toKeyId": b.id,
        "toPublicKey": b64(b.audit.raw),
        "treeSize": size,
        "rootHash": ROOT,
        "timestamp": "2026-12-01T10:00:00.000Z",
    }
    message = handover_message(body)
    return {**body, "fromSignature": (signer_a or a).sign(message), "toSignature": (signer_b or b).sign(message)}


A, B, C, X = Key(1), Key(2), Key(3), Key(9)


def decision_signed_by(key: Key, request_id: str = "req_1") -> dict[str, Any]:
    receipt = {
        "version": 1,
        "requestId": request_id,
        "outcome": "rejected",
        "decidedBy": "human",
        "deciders": [{"type": "operator", "id": "op_1", "name": "ann"}],
        "decidedAt": "2026-12-01T10:05:00.000Z",
        "payloadHash": None,
        "keyId": key.id,
    }
    receipt["signature"] = key.sign(receipt_message(receipt))
    return {"outcome": "rejected", "decidedBy": "human", "at": receipt["decidedAt"], "deciders": receipt["deciders"], "receipt": receipt}


class FollowChain(unittest.TestCase):
    def test_follows_the_line_from_any_key_on_it(self) -> None:
        chain = [handover(B, C, 7), handover(A, B, 3)]  # any order
        for pinned in (A, B, C):
            self.assertEqual([k.key_id for k in follow_key_chain(pinned.audit, chain)], [A.id, B.id, C.id])
        self.assertEqual([k.key_id for k in follow_key_chain(A.audit, [])], [A.id])

    def test_refuses_every_bent_chain(self) -> None:
        good = [handover(A, B, 3), handover(B, C, 7)]
        swapped = copy.deepcopy(good)
        swapped[1]["fromSignature"], swapped[1]["toSignature"] = swapped[1]["toSignature"], swapped[1]["fromSignature"]
        replaced = copy.deepcopy(good)
        replaced[1]["toPublicKey"] = b64(X.audit.raw)
        moved = copy.deepcopy(good)
        moved[1]["treeSize"] = 9  # signed at 7
        cases = {
            "a signature swapped": swapped,
            "the new key replaced": replaced,
            "the size moved after signing": moved,
            "signed by a stranger, not the retiring key": [handover(A, B, 3), handover(B, X, 7, signer_a=X)],
            "a fork (two hand-overs from one key)": [handover(A, B, 3), handover(A, X, 4)],
            "a key handed back to": [handover(A, B, 3), handover(B, A, 7)],
            "the same size twice (a key that covered nothing)": [handover(A, B, 3), handover(B, C, 3)],
            "a size going back": [handover(A, B, 7), handover(B, C, 3)],
            "a statement off the line": [handover(A, B, 3), handover(X, C, 9)],
            "not through the pinned key": [handover(B, C, 7)],
            "malformed": [{"fromKeyId": A.id}],
            "not a list": "nope",
        }
        for name, chain in cases.items():
            with self.subTest(name), self.assertRaises(CountersignError) as caught:
                follow_key_chain(A.audit, chain)  # type: ignore[arg-type]
            self.assertEqual(caught.exception.code, "RECEIPT_MISMATCH")


class Served:
    """Stands in for the server's GET /v1/audit/keys."""

    def __init__(self, status: int, handovers: Any) -> None:
        self.status, self.handovers, self.calls = status, handovers, 0

    served_key: Key | None = None

    def __call__(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, str]:
        if (method, path) == ("GET", "/v1/audit/public-key") and self.served_key is not None:
            return 200, self.served_key.audit.pem
        assert (method, path) == ("GET", "/v1/audit/keys"), (method, path)
        self.calls += 1
        return self.status, json.dumps({"current": "0" * 16, "handovers": self.handovers})


def client_pinned_to(key: Key, served: Served) -> Countersign:
    client = Countersign("http://127.0.0.1:9", "csk_test", audit_public_key=key.audit.pem, env={})
    client._send = served  # type: ignore[method-assign]
    return client


class ClientAfterRotation(unittest.TestCase):
    def test_pinned_to_the_old_key_it_checks_the_new_keys_receipts_through_the_chain(self) -> None:
        served = Served(200, [handover(A, B, 3)])
        client = client_pinned_to(A, served)
        client.check_receipt("req_1", decision_signed_by(B))
        client.check_receipt("req_2", decision_signed_by(B, "req_2"))
        self.assertEqual(served.calls, 1)  # learned once

    def test_a_receipt_of_the_pinned_key_needs_no_chain_until_one_is_learned(self) -> None:
        served = Served(500, [])
        client_pinned_to(A, served).check_receipt("req_1", decision_signed_by(A))
        self.assertEqual(served.calls, 0)

    def test_once_the_chain_is_known_the_retired_keys_receipt_is_refused(self) -> None:
        served = Served(200, [handover(A, B, 3)])
        client = client_pinned_to(A, served)
        client.check_receipt("req_1", decision_signed_by(B))
        with self.assertRaises(CountersignError) as caught:
            client.check_receipt("req_2", decision_signed_by(A, "req_2"))  # a stolen retired key, or a server still on it
        self.assertIn("retired key", caught.exception.message)

    def test_refuses_a_stranger_key_no_chain_a_bent_chain_and_a_fork_of_the_learned_one(self) -> None:
        for name, served, signer in [
            ("a key the chain does not reach", Served(200, [handover(A, B, 3)]), X),
            ("a server with no chain route", Served(404, []), B),
            ("the chain route failing", Served(503, []), B),
            ("a chain not signed by the pinned key", Served(200, [handover(A, B, 3, signer_a=X)]), B),
        ]:
            with self.subTest(name), self.assertRaises(CountersignError) as caught:
                client_pinned_to(A, served).check_receipt("req_1", decision_signed_by(signer))
            self.assertEqual(caught.exception.code, "RECEIPT_MISMATCH")
        # Learned A -> B; later the server (or a stolen A) offers A -> X instead: a fork.
        served = Served(200, [handover(A, B, 3)])
        client = client_pinned_to(A, served)
        client.check_receipt("req_1", decision_signed_by(B))
        served.handovers = [handover(A, X, 3)]
        with self.assertRaises(CountersignError) as caught:
            client.check_receipt("req_2", decision_signed_by(X, "req_2"))
        self.assertEqual(caught.exception.code, "RECEIPT_MISMATCH")
        # A later rotation B -> C that extends what was learned is followed.
        served.handovers = [handover(A, B, 3), handover(B, C, 8)]
        client.check_receipt("req_3", decision_signed_by(C, "req_3"))
        # …and the route going missing after a chain was learned is a fork too.
        served.status = 404
        with self.assertRaises(CountersignError):
            client.check_receipt("req_4", decision_signed_by(X, "req_4"))


class KeyIdPin(unittest.TestCase):
    def test_a_key_id_pin_of_the_old_key_finds_its_key_in_the_chain_and_follows_it(self) -> None:
        served = Served(200, [handover(A, B, 3)])
        served.served_key = B  # after the rotation the server serves its newest key
        client = Countersign("http://127.0.0.1:9", "csk_test", audit_public_key=A.id, env={})
        client._send = served  # type: ignore[method-assign]
        client.check_receipt("req_1", decision_signed_by(B))
        self.assertEqual(client.audit_key().key_id, A.id)

    def test_a_key_id_pin_the_chain_does_not_name_is_refused(self) -> None:
        served = Served(200, [handover(B, C, 3)])
        served.served_key = C
        client = Countersign("http://127.0.0.1:9", "csk_test", audit_public_key=A.id, env={})
        client._send = served  # type: ignore[method-assign]
        with self.assertRaises(CountersignError) as caught:
            client.check_receipt("req_1", decision_signed_by(C))
        self.assertEqual(caught.exception.code, "RECEIPT_MISMATCH")
        # A statement naming the pinned id beside another key (whose hash is not the id) gives nothing.
        bent = handover(X, C, 3)
        bent["fromKeyId"] = A.id
        served.handovers = [bent]
        client = Countersign("http://127.0.0.1:9", "csk_test", audit_public_key=A.id, env={})
        client._send = served  # type: ignore[method-assign]
        with self.assertRaises(CountersignError):
            client.check_receipt("req_1", decision_signed_by(C))


class Interop(unittest.TestCase):
    def test_a_hand_over_and_receipt_made_by_the_server_code_are_followed(self) -> None:
        fixture = json.loads((Path(__file__).parent / "fixtures" / "rotation-ts.json").read_text())
        served = Served(200, fixture["handovers"])
        client = Countersign("http://127.0.0.1:9", "csk_test", audit_public_key=fixture["oldPublicKeyPem"], env={})
        client._send = served  # type: ignore[method-assign]
        client.check_receipt("req_01interop", fixture["decision"])
        self.assertEqual(client._newest.key_id if client._newest else None, fixture["newKeyId"])
        bent = copy.deepcopy(fixture["decision"])
        bent["receipt"]["decidedBy"] = "timeout"
        bent["decidedBy"] = "timeout"
        with self.assertRaises(CountersignError):
            client.check_receipt("req_01interop", bent)


if __name__ == "__main__":
    unittest.main()
