"""The settings a reset follows, built once when the app is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app

from service.models import ResetMethod


@dataclass(frozen=True)
class ResetPolicy:
    """What self-service sends, how long links and temporary passwords live, where links point."""

    method: ResetMethod
    link_lifetime: timedelta
    temporary_password_lifetime: timedelta
    base_url: str
    mails_per_hour: int = 3
    code_attempts: int = 5

    @classmethod
    def from_settings(cls, config: Mapping[str, Any]) -> ResetPolicy:
        return cls(
            method=ResetMethod(config["RESET_METHOD"]),
            link_lifetime=timedelta(seconds=config["RESET_TOKEN_MAX_AGE"]),
            temporary_password_lifetime=timedelta(seconds=config["TEMPORARY_PASSWORD_MAX_AGE"]),
            base_url=config["PUBLIC_BASE_URL"],
            mails_per_hour=config["RESET_MAILS_PER_HOUR"],
            code_attempts=config["RESET_CODE_ATTEMPTS"],
        )

    def lifetime(self, method: str) -> timedelta:
        """How long a link or a temporary password lives."""
        return self.link_lifetime if method == ResetMethod.LINK else self.temporary_password_lifetime


def reset_policy() -> ResetPolicy:
    """The current app's policy, for the doors to hand to the rules."""
    policy: ResetPolicy = current_app.extensions["resetdesk.reset_policy"]
    return policy
