"""Who may change state from the dashboard: nobody, unless it was started with
``--allow-actions`` and a token, and then only a POST that carries that token as
``Authorization: Bearer <token>`` (compared in constant time). A GET never changes
state, with or without a token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """The dashboard's action settings.

    Attributes:
        allow_actions: Actions (requeue, cancel) are offered at all.
        token: The token an action must carry (required with ``allow_actions``).
    """

    allow_actions: bool = False
    token: str | None = None

    def __post_init__(self) -> None:
        if self.allow_actions and not self.token:
            raise ValueError("actions need a token")

    def refusal(self, authorization: str | None) -> tuple[int, str] | None:
        """Why an action with this ``Authorization`` header is refused (HTTP status and
        message), or None when it may go ahead."""
        if not self.allow_actions or not self.token:
            return 403, "actions are off: start the dashboard with --allow-actions and --token"
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return 401, "this action needs the token: Authorization: Bearer <token>"
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return 401, "wrong token"
        return None
