"""Ed25519 signature verification (RFC 8032, section 5.1), in pure Python.

The standard library has SHA-512 but no Ed25519, and this client takes no dependencies, so the
curve arithmetic is here. It only ever handles public data (a public key, a signature, a
message), so it needs no constant-time care; it does need to be strict, because a verifier that
accepts a second encoding of a key or a signature accepts something nobody signed:

- the public key must be a canonical encoding (y < p) of a point on the curve;
- S must be below the group order L (RFC 8032 5.1.7, step 1), so (R, S + L) is refused;
- the check is cofactorless, [S]B = R + [k]A, by comparing the encoding of [S]B - [k]A with
  the 32 bytes of R, which also refuses a non-canonical R. This is what OpenSSL (and so the
  Countersign server and the TypeScript SDK, through WebCrypto) does, so all three agree on
  every signature.

`sign` and `public_key` exist so tests can make receipts with their own keys and reproduce the
RFC's test vectors; a client never signs.
"""

from __future__ import annotations

import hashlib

__all__ = ["verify", "sign", "public_key"]

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z, xy = T/Z
IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar: int, point: Point) -> Point:
    result = IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _neg(point: Point) -> Point:
    return ((-point[0]) % P, point[1], point[2], (-point[3]) % P)


def _encode(point: Point) -> bytes:
    zinv = pow(point[2], P - 2, P)
    x = point[0] * zinv % P
    y = point[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _recover_x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decode(data: bytes) -> Point | None:
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    y = value & ((1 << 255) - 1)
    x = _recover_x(y, value >> 255)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
assert _GX is not None
B: Point = (_GX, _GY, 1, _GX * _GY % P)


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True exactly when `signature` (64 bytes) is a valid Ed25519 signature of `message` by `public` (32 bytes)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decode(public)
    if a is None:
        return False
    r_bytes, s = signature[:32], int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = _hash_int(r_bytes, public, message) % L
    return _encode(_add(_mul(s, B), _neg(_mul(k, a)))) == r_bytes


def _expand(seed: bytes) -> tuple[int, bytes]:
    if len(seed) != 32:
        raise ValueError("an Ed25519 secret key is 32 bytes")
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed: bytes) -> bytes:
    """The public key of a 32-byte secret key (for tests)."""
    return _encode(_mul(_expand(seed)[0], B))


def sign(seed: bytes, message: bytes) -> bytes:
    """An Ed25519 signature (for tests: the client never signs)."""
    a, prefix = _expand(seed)
    public = _encode(_mul(a, B))
    r = _hash_int(prefix, message) % L
    r_bytes = _encode(_mul(r, B))
    k = _hash_int(r_bytes, public, message) % L
    return r_bytes + ((r + k * a) % L).to_bytes(32, "little")
