"""Countersign for Python agents: ask before a risky action, wait for the human decision, and
run only what was approved, checked against the server's signed receipt.

    from countersign import Countersign, CountersignError

    cs = Countersign("http://127.0.0.1:8080", "csk_…", audit_public_key="countersign-audit.pem")

    @cs.guard("isolate_host", confidence=0.82)
    def isolate(host: str) -> str:
        return edr.isolate(host)

Every name exported here is public API; the rest is internal.
"""

from .client import Alternative, Countersign, Decision, Request
from .errors import CountersignError
from .receipts import AuditKey

__all__ = ["Countersign", "CountersignError", "Alternative", "AuditKey", "Request", "Decision"]
__version__ = "0.1.0"
