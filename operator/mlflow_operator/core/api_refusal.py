"""A request the Kubernetes API refused, as status and Events report it.

A 403 (missing RBAC), 422 (an object the API server finds invalid) or 409 on a write leaves
the children as they were; status must say so instead of keeping an older, possibly True,
Ready. The reason names the API's own reason (KubernetesForbidden, KubernetesInvalid, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlflow_operator.core.redact import redact

HTTP_FORBIDDEN = 403
# the API server's words for a namespace being deleted (its NamespaceLifecycle admission)
TERMINATING = "because it is being terminated"
MAX_MESSAGE = 1024  # API error messages can list every invalid field; keep status readable
_NOT_CAMEL = re.compile(r"[^A-Za-z0-9]")


@dataclass(frozen=True)
class ApiRefusal:
    action: str  # what the operator tried, e.g. "apply Deployment ml/fraud"
    code: int
    api_reason: str  # the Status reason: Forbidden, Invalid, Conflict, ...
    api_message: str

    @property
    def needs_a_person(self) -> bool:
        """A client error (403, 422, ...) does not go away by retrying; 5xx and 429 may."""
        return 400 <= self.code < 500 and self.code != 429

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing can be created in it, nobody is to be told.

        Events posted into it are refused too, and kopf retries each one for a minute and a
        half in its single posting queue, delaying every other object's Events behind them.
        """
        return self.code == HTTP_FORBIDDEN and TERMINATING in self.api_message

    @property
    def reason(self) -> str:
        word = _NOT_CAMEL.sub("", self.api_reason) or f"Http{self.code}"
        return f"Kubernetes{word}"

    @property
    def message(self) -> str:
        text = (
            f"the Kubernetes API refused to {self.action} (HTTP {self.code} {self.api_reason})"
            + (f": {self.api_message}" if self.api_message else "")
        )
        text = redact(text)
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
