"""One error type, as in the TypeScript SDK: a stable string `code` to branch on, a message for
people, and the server's `details` when it sent any."""

from __future__ import annotations

from typing import Any

__all__ = ["CountersignError"]


class CountersignError(Exception):
    """An error with a Countersign code (see docs/errors.md), e.g. ``APPROVAL_REJECTED``.

    Server errors keep the server's code; failures to reach the server are ``NETWORK_ERROR``;
    a decision whose signed receipt does not hold is ``RECEIPT_MISMATCH``.
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"CountersignError({self.code!r}, {self.message!r})"
