"""Masking of secrets in log lines. Pure: no Django, tested without a database.

Known secret values (a workspace's secret variables, secret-looking environment variables)
are replaced exactly; AWS credentials are also caught by shape, since a tool may print one
we were never told about.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

MASK = "[REDACTED]"

# Values shorter than this are not masked by value: masking "true" or "1" everywhere would
# destroy the log without protecting anything.
MIN_SECRET_LENGTH = 6

SECRET_ENV_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIAL)", re.I)

_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
# 40 characters of the secret-key alphabet with at least one upper-case letter, one
# lower-case letter and one digit: a git SHA (hex, one case) does not match.
_AWS_SECRET_KEY = re.compile(
    r"(?<![A-Za-z0-9/+])"
    r"(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[0-9])"
    r"[A-Za-z0-9/+]{40}"
    r"(?![A-Za-z0-9/+])"
)
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:aws_)?(?:secret_access_key|session_token|secret|password|passwd|token)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)"
)
DEFAULT_PATTERNS: tuple[re.Pattern[str], ...] = (_AWS_KEY_ID, _AWS_SECRET_KEY)


class Redactor:
    """Callable that masks secrets in one line of text."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        patterns: Iterable[re.Pattern[str]] = DEFAULT_PATTERNS,
    ) -> None:
        self._secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        )
        # Longest first, so a secret that contains another is masked whole.
        self._values = (
            re.compile("|".join(re.escape(v) for v in self._secrets)) if self._secrets else None
        )
        self._patterns = tuple(patterns)

    def __call__(self, line: str) -> str:
        if self._values is not None:
            line = self._values.sub(MASK, line)
        for pattern in self._patterns:
            line = pattern.sub(MASK, line)
        return _ASSIGNED_SECRET.sub(_mask_assigned, line)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor((*self._secrets, *secrets), self._patterns)


def _mask_assigned(match: re.Match[str]) -> str:
    value = match.group(2)
    if value == MASK or len(value) < MIN_SECRET_LENGTH:
        return match.group(0)
    return match.group(1) + MASK


def secret_values_from_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they are secret."""
    environ = os.environ if environ is None else environ
    return [value for name, value in environ.items() if SECRET_ENV_NAME.search(name) and value]


def default_redactor() -> Redactor:
    return Redactor(secret_values_from_environment())
