"""Canonical JSON and payload hashes byte-equal to the TypeScript core's, since receipts sign them.

Besides fixed cases, the vitest runner writes what core's ``canonicalJson`` and ``payloadHash``
make of hostile values (COUNTERSIGN_TEST_CANONICAL, a JSON file) and this checks each."""

from __future__ import annotations

import json
import os
import unittest

from countersign.canonical import canonical_json, js_number
from countersign.receipts import payload_hash


class CanonicalJson(unittest.TestCase):
    def test_numbers_as_javascript_writes_them(self) -> None:
        cases = {1e21: "1e+21", 1e-7: "1e-7", 5.0: "5", -0.0: "0", 0.1 + 0.2: "0.30000000000000004", 1e20: "100000000000000000000",
                 12345678901234567890: "12345678901234567000", 0.000001: "0.000001", -1.5e-300: "-1.5e-300", 2**53: "9007199254740992"}
        for value, text in cases.items():
            self.assertEqual(js_number(value), text, repr(value))
        self.assertEqual(canonical_json(float("nan")), "null")

    def test_keys_sorted_by_utf16_and_strings_escaped(self) -> None:
        value = {"b": 1, "a": [True, None, "\u2028\x01\ud800é\"\\"], "\uffff": 1, "\U0001F600": 2}
        self.assertEqual(canonical_json(value), '{"a":[true,null,"\u2028\\u0001\\ud800é\\"\\\\"],"b":1,"\U0001F600":2,"\uffff":1}')

    def test_matches_core_on_the_runner_fixture(self) -> None:
        path = os.environ.get("COUNTERSIGN_TEST_CANONICAL")
        if not path:
            self.fail("COUNTERSIGN_TEST_CANONICAL is not set: run these tests through clients/python/test/python-client.test.ts")
        with open(path, encoding="utf-8") as f:
            cases = json.load(f)
        self.assertGreater(len(cases), 5)
        for case in cases:
            with self.subTest(case["canonical"][:60]):
                self.assertEqual(canonical_json(case["value"]), case["canonical"])
                self.assertEqual(payload_hash(case["action"], case["value"]), case["payloadHash"])


if __name__ == "__main__":
    unittest.main()


class KeyTransport(unittest.TestCase):
    def test_plain_http_only_to_loopback_never_to_a_dot_localhost_name(self) -> None:
        from countersign.client import _is_loopback

        for host in ("localhost", "127.0.0.1", "127.9.9.9", "[::1]", "::1"):
            self.assertTrue(_is_loopback(host), host)
        for host in ("evil.localhost", "localhost.evil.example", "10.0.0.1", "127.0.0.1.evil.example"):
            self.assertFalse(_is_loopback(host), host)
