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

# Candidate credentials: runs of the AWS key alphabet long enough to be one. One scan finds
# them; the checks below run only on these few tokens (one regex per shape, each trying
# every position, cost several times more on long logs).
_TOKEN = re.compile(r"[A-Za-z0-9/+]{20,}")
_KEY_ID_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA")
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:aws_)?(?:secret_access_key|session_token|secret|password|passwd|token)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)"
)
# Lower-case words, one of which a line must contain for _ASSIGNED_SECRET to match.
_ASSIGNED_HINTS = ("secret", "passw", "token")


def looks_like_aws_credential(token: str) -> bool:
    """An access key id (AKIA… and kin, 20 upper-case characters), or a secret access key:
    40 characters with upper- and lower-case letters and digits, which a git SHA (hex, one
    case) never has."""
    if len(token) == 20:
        return token.startswith(_KEY_ID_PREFIXES) and token.isalnum() and token.isupper()
    if len(token) == 40:
        return (
            any(c.isupper() for c in token)
            and any(c.islower() for c in token)
            and any(c.isdigit() for c in token)
        )
    return False


def _mask_credential(match: re.Match[str]) -> str:
    token = match.group(0)
    return MASK if looks_like_aws_credential(token) else token


class Redactor:
    """Callable that masks secrets in a line, or in lines joined by newlines."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        )
        # Longest first, so a secret that contains another is masked whole.
        self._values = (
            re.compile("|".join(re.escape(v) for v in self._secrets)) if self._secrets else None
        )

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MASK, text)
        text = _TOKEN.sub(_mask_credential, text)
        lowered = text.lower()
        if any(hint in lowered for hint in _ASSIGNED_HINTS):
            text = _ASSIGNED_SECRET.sub(_mask_assigned, text)
        return text

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor((*self._secrets, *secrets))


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
