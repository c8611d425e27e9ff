"""Masking of secrets in log lines. Pure: no Django, tested without a database.

Known secret values (a workspace's secret variables, secret-looking environment variables)
are replaced exactly, in every form a tool is likely to print them: each line of a
multi-line value (a PEM key printed by a provisioner comes out line by line, each behind a
prefix), and the value's base64 (standard and URL-safe), URL-encoded and JSON-escaped forms.
AWS credentials are also caught by shape, since a tool may print one we were never told
about, wherever they stand inside a longer token (`Credential=AKIA…/20260101/…`, a key in a
path); and a `-----BEGIN … PRIVATE KEY-----` block is masked until its END line, across
calls, since a log arrives in batches.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
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
# The same test as `_TOKEN.search`, at memory speed: the token alphabet mapped to one byte
# and a run of twenty of it looked for (most output holds no such run; the regex tries a
# run at every position inside it). UTF-8 bytes of other characters are never in it.
_TOKEN_BYTES = bytes(
    ord("a") if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "/+") else ord(" ")
    for b in range(256)
)
_TOKEN_RUN = b"a" * 20
# Above this, the two copies `has_token` makes would cost more memory than its time saves.
_TOKEN_PREFILTER_MAX_CHARS = 1 << 22


def has_token(text: str) -> bool:
    """True if `text` holds a run of `_TOKEN`'s alphabet long enough to match it."""
    return _TOKEN_RUN in text.encode("utf-8", "surrogatepass").translate(_TOKEN_BYTES)


_KEY_ID_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA")
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:aws_)?(?:secret_access_key|session_token|secret|password|passwd|token)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)"
)
# Lower-case words, one of which a line must contain for _ASSIGNED_SECRET to match.
_ASSIGNED_HINTS = ("secret", "passw", "token")


_KEY_ID_INSIDE = re.compile(
    r"(?<![A-Z0-9])(?:" + "|".join(_KEY_ID_PREFIXES) + r")[A-Z0-9]{16}(?![A-Z0-9])"
)
_BEGIN_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_END_PRIVATE_KEY = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/=]{16,}")
# A block whose END line never comes stops being masked after this many lines.
MAX_PRIVATE_KEY_LINES = 400


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
    if looks_like_aws_credential(token):
        return MASK
    # A credential inside a longer token: a key id anywhere, a secret key between slashes.
    if len(token) > 20:
        token = _KEY_ID_INSIDE.sub(MASK, token)
    return _mask_secret_keys_in_path(token) if len(token) > 40 else token


def _mask_secret_keys_in_path(token: str) -> str:
    starts = [0, *(i + 1 for i, c in enumerate(token) if c == "/")]
    for start in starts:
        end = start + 40
        if end <= len(token) and (end == len(token) or token[end] == "/"):
            window = token[start:end]
            if looks_like_aws_credential(window):
                return token[:start] + MASK + _mask_secret_keys_in_path(token[end:])
    return token


def literal_union(words: Iterable[str]) -> str:
    """A pattern matching any of `words`, the longest where several start at one place (a
    secret that contains another is masked whole). Built as a trie: a plain alternation of a
    few hundred literals (each line of a key, in each encoding) is tried one by one at every
    position of the log, a trie once."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, dict]) -> str:
        ends = "" in node
        branches = []
        for char, child in node.items():
            if not char:
                continue
            run = char  # a chain with no branch and no word ending is one literal
            while len(child) == 1 and "" not in child:
                ((next_char, child),) = child.items()
                run += next_char
            branches.append(re.escape(run) + pattern(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:  # a word ends here: the longer ones are tried first (greedy)
            return "(?:" + body + ")?"
        return body

    return pattern(trie)


def secret_forms(value: str) -> set[str]:
    """The forms of a secret value a tool may print: the value, its base64 (standard and
    URL-safe, padding dropped so an unpadded copy matches too), URL-encoded and JSON-escaped
    forms, and each line of a multi-line value as it is (a tool prints those one by one)."""
    raw = value.encode()
    forms = {
        value,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        *(line.strip() for line in value.splitlines()),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """Callable that masks secrets in a line, or in lines joined by newlines."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
        forms = set().union(*(secret_forms(s) for s in self._secrets))
        self._values = re.compile(literal_union(forms)) if forms else None
        # Lines left in a private key block that began in an earlier call; 0: not in one.
        self._key_lines_left = 0

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MASK, text)
        if self._key_lines_left or "PRIVATE KEY-----" in text:
            text = "\n".join(self._mask_private_key_line(line) for line in text.split("\n"))
        if len(text) > _TOKEN_PREFILTER_MAX_CHARS or has_token(text):
            text = _TOKEN.sub(_mask_credential, text)
        lowered = text.lower()
        if any(hint in lowered for hint in _ASSIGNED_HINTS):
            text = _ASSIGNED_SECRET.sub(_mask_assigned, text)
        return text

    def _mask_private_key_line(self, line: str) -> str:
        begin = _BEGIN_PRIVATE_KEY.search(line)
        if begin is not None and not self._key_lines_left:
            self._key_lines_left = MAX_PRIVATE_KEY_LINES
            head, line = line[: begin.start()] + MASK, line[begin.end() :]
        else:
            head = ""
        if not self._key_lines_left:
            return head + line
        end = _END_PRIVATE_KEY.search(line)
        if end is not None:
            self._key_lines_left = 0
            return head + _KEY_BODY.sub(MASK, line[: end.start()]) + MASK + line[end.end() :]
        self._key_lines_left -= 1
        return head + _KEY_BODY.sub(MASK, line)

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
