"""Canonical JSON exactly as the server and the TypeScript SDK write it.

A receipt signs the SHA-256 of the canonical JSON of the approved ``{action, args}``, so this
client must produce the same bytes as JavaScript's ``canonicalJson`` (packages/core/src/
canonical.ts) for every value the server can send: object keys sorted by UTF-16 code units
(JavaScript's string order, which differs from Python's code-point order above U+FFFF),
strings escaped as ``JSON.stringify`` escapes them, and numbers written as JavaScript writes
them (``1e+21``, ``1e-7``, ``5`` for 5.0, ``0`` for -0, integers past 2**53 rounded as a double).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

__all__ = ["canonical_json", "js_number"]

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF:
            # Control characters, and lone surrogates (JSON.stringify is well-formed since ES2019).
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def js_number(value: float | int) -> str:
    """A number as JavaScript's ``String(number)`` writes it (ECMA-262 Number::toString)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr() gives the shortest digits that round-trip, as JavaScript does.
    digits_tuple, exponent = Decimal(repr(abs(x))).as_tuple()[1:]
    digits = "".join(str(d) for d in digits_tuple).rstrip("0") or "0"
    assert isinstance(exponent, int)
    trailing = len("".join(str(d) for d in digits_tuple)) - len(digits)
    k = len(digits)
    n = k + exponent + trailing  # value = 0.digits × 10^n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace; None, dict, list/tuple, str, int, float and bool only."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
        items = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(f"{_string(k)}:{canonical_json(v)}" for k, v in items) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")
