"""What a process knows of a service it depends on (SQS, the media bucket), so a request
that needs it is told at once while it is down or hanging, instead of waiting on it.

Subclassed per service: workers/outbox.py's BrokerHealth (the job queue),
media_pipeline/storage.py's MediaStorageHealth (S3 media).
"""

from __future__ import annotations

import threading
import time

from workers.errors import ApplicationError

# How long a successful use or probe vouches for a service.
HEALTH_TTL_SECONDS = 10.0


class ServiceHealth:
    """What this process knows of a service it depends on: reachable (a use or probe
    succeeded in the last HEALTH_TTL_SECONDS), unreachable (one failed in that time), or
    unknown, when one cheap probe decides. Known either way, `ensure_available` answers at
    once: a hanging service would otherwise hold every request that needs it for a probe's
    timeout, each in parallel. Subclasses say how to probe and how to refuse."""

    # The exceptions by which a probe says the service cannot be reached.
    errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self._confirmed_at = float("-inf")
        self._failed_at = float("-inf")
        self._error: str | None = None

    def probe(self) -> None:
        """One cheap call that raises one of `errors` if the service cannot be reached."""
        raise NotImplementedError

    def refusal(self, error: str | None) -> ApplicationError:
        """What a person is told while the service is unreachable (`error` says why)."""
        raise NotImplementedError

    def confirm(self) -> None:
        with self._lock:
            self._confirmed_at = time.monotonic()
            self._error = None

    def fail(self, cause: BaseException | str) -> None:
        with self._lock:
            self._failed_at = time.monotonic()
            self._error = (
                cause if isinstance(cause, str) else f"{cause.__class__.__name__}: {cause}"
            )

    def reset(self) -> None:
        with self._lock:
            self._confirmed_at = self._failed_at = float("-inf")
            self._error = None

    def unreachable_cause(self) -> str | None:
        """None if the service is believed reachable (one cheap probe decides when that is
        unknown); else the kind of error that says why not."""
        try:
            self.ensure_available()
        except ApplicationError:
            with self._lock:
                return error_kind(self._error)
        return None

    def ensure_available(self) -> None:
        """Return if the service is believed reachable; else raise its refusal."""
        with self._lock:
            error = self._error
            now = time.monotonic()
            fresh = now - self._confirmed_at < HEALTH_TTL_SECONDS
            failed_lately = error is not None and now - self._failed_at < HEALTH_TTL_SECONDS
        if error is None and fresh:
            return
        if failed_lately:
            raise self.refusal(error)
        if not self._probing.acquire(blocking=False):
            # Another request is asking the service this moment: answer from what was last
            # known instead of waiting out a probe of its own beside it.
            if error is not None:
                raise self.refusal(error)
            return
        try:
            self.probe()
        except self.errors as exc:
            self.fail(exc)
            raise self.refusal(exc.__class__.__name__) from exc
        finally:
            self._probing.release()
        self.confirm()


def error_kind(error: str | None) -> str:
    """The kind of a recorded error ("EndpointConnectionError: …" -> its class)."""
    return (error or "unknown").split(":", 1)[0]
