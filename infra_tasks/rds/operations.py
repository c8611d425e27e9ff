"""Stop, start and describe an RDS instance or Aurora cluster, whatever state it is in.

No Django models in here: the service passes a boto3 client, a `workers.logsink.LogSink`
and the limits. Its failures are `ApplicationError`s, worded for the person who asked. The
rules (what is a no-op, what is worth waiting for, what is AWS refusing for good):

- stop of stopped/stopping, start of available/starting: nothing to ask; wait for the
  target state if it is still on its way, and report a no-op.
- a transitional state (backing-up, modifying, upgrading, maintenance, ...): retried with
  exponential backoff up to a bound, then a failure that names the state it was stuck in.
- AWS refusing the call while the database is in the state the call needs (a read replica,
  an engine that cannot be stopped): a failure carrying AWS's own message.
- throttling: retried with backoff, on top of botocore's own retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from workers.errors import ApplicationError
from workers.logsink import LogSink

THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
# Codes AWS uses for "not in a state for that": worth a re-describe before giving up.
STATE_FAULT_CODES = frozenset(
    {"InvalidDBInstanceState", "InvalidDBInstanceStateFault", "InvalidDBClusterStateFault"}
)

STOPPED, AVAILABLE = "stopped", "available"


class ActionRefused(ApplicationError):
    """AWS will not do this to this database; its reason is the message."""


class StillTransitional(ApplicationError):
    """The database stayed in a transitional state past the retry bound."""


class WaitTimedOut(ApplicationError):
    """The database did not reach the target state in time."""


@dataclass(frozen=True)
class Limits:
    retry_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    throttle_attempts: int
    poll_seconds: float
    wait_timeout_seconds: float

    def backoff(self, attempt: int) -> float:
        return min(self.retry_base_seconds * 2 ** (attempt - 1), self.retry_max_seconds)


@dataclass(frozen=True)
class Outcome:
    status_before: str
    status_after: str
    changed: bool  # False: nothing needed asking
    wait_seconds: float
    attempts: int
    message: str


@dataclass(frozen=True)
class Target:
    kind: str  # "instance" or "cluster"
    identifier: str


def rds_client(region: str) -> Any:
    import boto3

    return boto3.client(
        "rds", region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 3})
    )


class Operator:
    def __init__(
        self,
        client: Any,
        target: Target,
        *,
        log: LogSink,
        limits: Limits,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.target = target
        self.log = log
        self.limits = limits
        self.sleep = sleep
        self.clock = clock

    # --- AWS calls -----------------------------------------------------------------------

    def status(self) -> str:
        if self.target.kind == "cluster":
            response = self._call(
                self.client.describe_db_clusters, DBClusterIdentifier=self.target.identifier
            )
            return str(response["DBClusters"][0]["Status"])
        response = self._call(
            self.client.describe_db_instances, DBInstanceIdentifier=self.target.identifier
        )
        return str(response["DBInstances"][0]["DBInstanceStatus"])

    def _request(self, verb: str) -> None:
        if self.target.kind == "cluster":
            method = getattr(self.client, f"{verb}_db_cluster")
            self._call(method, DBClusterIdentifier=self.target.identifier)
        else:
            method = getattr(self.client, f"{verb}_db_instance")
            self._call(method, DBInstanceIdentifier=self.target.identifier)

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        for attempt in range(1, self.limits.throttle_attempts + 1):
            try:
                return method(**kwargs)
            except ClientError as exc:
                if _code(exc) not in THROTTLING_CODES or attempt == self.limits.throttle_attempts:
                    raise
                pause = self.limits.backoff(attempt)
                self.log.line(f"AWS throttled {method.__name__}; retrying in {pause:g} s")
                self.sleep(pause)
        raise AssertionError("unreachable")

    # --- actions -------------------------------------------------------------------------

    def refresh(self) -> Outcome:
        status = self.status()
        self.log.line(f"{self._name()} is {status}")
        return Outcome(status, status, False, 0.0, 1, f"AWS reports {status}")

    def stop(self) -> Outcome:
        return self._drive("stop", target=STOPPED, ready=AVAILABLE, on_its_way="stopping")

    def start(self) -> Outcome:
        return self._drive("start", target=AVAILABLE, ready=STOPPED, on_its_way="starting")

    def _drive(self, verb: str, *, target: str, ready: str, on_its_way: str) -> Outcome:
        first = self.status()
        self.log.line(f"{self._name()} is {first}; wanted {target}")
        status = first
        for attempt in range(1, self.limits.retry_attempts + 1):
            if status == target:
                return Outcome(first, status, False, 0.0, attempt, f"already {target}")
            if status == on_its_way:
                self.log.line(f"already {on_its_way}: nothing to ask, waiting for {target}")
                waited = self._wait_for(target)
                return Outcome(first, target, False, waited, attempt, f"was {on_its_way}")
            if status == ready:
                try:
                    self._request(verb)
                except ClientError as exc:
                    if _code(exc) not in STATE_FAULT_CODES:
                        raise ActionRefused(_reason(exc)) from exc
                    # Its state may have moved between describe and the call; look again.
                    now = self.status()
                    if now == ready:
                        raise ActionRefused(_reason(exc)) from exc
                    self.log.line(f"AWS refused {verb} ({_code(exc)}): now {now}")
                    status = now
                    continue
                self.log.line(f"asked AWS to {verb} {self._name()}")
                waited = self._wait_for(target)
                return Outcome(first, target, True, waited, attempt, f"{verb} took {waited:.1f} s")
            if attempt == self.limits.retry_attempts:
                break
            pause = self.limits.backoff(attempt)
            self.log.line(
                f"{status}: cannot {verb} now; retry {attempt}/{self.limits.retry_attempts - 1}"
                f" in {pause:g} s"
            )
            self.sleep(pause)
            status = self.status()
        raise StillTransitional(
            f"gave up on {verb} of {self._name()} after {self.limits.retry_attempts} checks:"
            f" it stayed {status}; {verb} it once AWS has finished"
        )

    def _wait_for(self, target: str) -> float:
        started = self.clock()
        while True:
            status = self.status()
            if status == target:
                waited = self.clock() - started
                self.log.line(f"{self._name()} is {target} after {waited:.1f} s")
                return waited
            if self.clock() - started > self.limits.wait_timeout_seconds:
                raise WaitTimedOut(
                    f"{self._name()} did not become {target} within"
                    f" {self.limits.wait_timeout_seconds:g} s (last seen {status})"
                )
            self.sleep(self.limits.poll_seconds)

    def _name(self) -> str:
        return f"{self.target.kind} {self.target.identifier}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"AWS refused: {error.get('Code', 'error')}: {error.get('Message', str(exc))}"
