"""Simulate worker services draining SQS backlogs under the deployed autoscaling rule.

The deployed rule (deploy/cloudformation/opsqueue.yaml) is target tracking, per worker
service, on (ApproximateNumberOfMessagesVisible + ApproximateNumberOfMessagesNotVisible) /
RunningTaskCount. Its targets, each service's CPU/memory (for the price), concurrency,
maximum task count and cooldowns are read from the template, so the figures follow it.
Beside it: a fixed number of tasks, and target tracking on visible messages per task alone
(target = concurrency x acceptable wait / seconds per job), the textbook SQS rule.

Per-job costs: the media job is measured here (Pillow on a 12 MP JPEG: shrink-on-load, 200
and 800 px wide, JPEG and WebP). Default and infra job costs are stated assumptions (a
default job is short bookkeeping; a terraform plan/apply or an RDS wait against real AWS
takes minutes); override them with --default-seconds / --infra-seconds / --media-seconds.

Target tracking is modelled the way Application Auto Scaling runs it: one-minute
datapoints that arrive a minute late; scale out after 3 datapoints above the target to
ceil(metric x running / target) tasks; scale in after 15 datapoints below 90 % of it, one
task per action (AWS scales in conservatively); cooldowns; a new Fargate task consumes
after a start delay; a task scaled in finishes its running jobs first.

    .venv/bin/python bench/scale_sim.py

One module on purpose (over 350 lines): a benchmark script run by path, whose model, policies
and report are read top to bottom together.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from cfnlint.decode import cfn_yaml
from PIL import Image

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "cloudformation" / "opsqueue.yaml"

# Fargate, Linux/x86, us-east-1, on demand.
PRICE_VCPU_HOUR = 0.04048
PRICE_GB_HOUR = 0.004445
TASK_START_SECONDS = 60  # image pull and start of a new Fargate task
METRIC_LAG_SECONDS = 60  # an SQS datapoint is usable about a minute after its period
SCALE_OUT_DATAPOINTS = 3
SCALE_IN_DATAPOINTS = 15
SETTLE_SECONDS = 15 * 60  # steady-state figures leave out the first scale-out


@dataclass(frozen=True)
class Service:
    queue: str
    vcpu: float
    memory_gb: float
    concurrency: int
    max_tasks: int
    target: float | None  # messages (waiting or in progress) per task; None: not scaled
    scale_out_cooldown: int = 60
    scale_in_cooldown: int = 300

    @property
    def price_per_task_second(self) -> float:
        return (self.vcpu * PRICE_VCPU_HOUR + self.memory_gb * PRICE_GB_HOUR) / 3600


def services_from_template(path: Path = TEMPLATE) -> dict[str, Service]:
    template = cfn_yaml.load(str(path))
    resources, parameters = template["Resources"], template["Parameters"]
    services = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::ECS::Service":
            continue
        task = resources[resource["Properties"]["TaskDefinition"]["Ref"]]["Properties"]
        (container,) = task["ContainerDefinitions"]
        if container["Command"][0] != "worker":
            continue
        queue = container["Command"][1]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        target, max_tasks, cooldowns = None, 1, (60, 300)
        for scalable in resources.values():
            props = scalable.get("Properties", {})
            if scalable["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget" and (
                f"${{{logical_id}.Name}}" in props["ResourceId"]["Fn::Sub"]
            ):
                max_tasks = int(parameters[props["MaxCapacity"]["Ref"]]["Default"])
        for policy in resources.values():
            props = policy.get("Properties", {})
            config = props.get("TargetTrackingScalingPolicyConfiguration")
            if config and f"-worker-{queue}-" in props["PolicyName"]["Fn::Sub"]:
                target = float(parameters[config["TargetValue"]["Ref"]]["Default"])
                cooldowns = (config["ScaleOutCooldown"], config["ScaleInCooldown"])
        services[queue] = Service(
            queue=queue,
            vcpu=int(task["Cpu"]) / 1024,
            memory_gb=int(task["Memory"]) / 1024,
            concurrency=int(env["CELERY_WORKER_CONCURRENCY"]),
            max_tasks=max_tasks,
            target=target,
            scale_out_cooldown=cooldowns[0],
            scale_in_cooldown=cooldowns[1],
        )
    return services


def measure_media_job_seconds(repeat: int = 5) -> float:
    """Median wall time of one cover's four variants from a 4000x3000 JPEG, on one core."""
    source = io.BytesIO()
    Image.radial_gradient("L").resize((4000, 3000)).convert("RGB").save(source, "JPEG")
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for width in (200, 800):
            with Image.open(io.BytesIO(source.getvalue())) as image:
                image.draft("RGB", (width, width * 3 // 4))
                variant = image.resize((width, width * 3 // 4), Image.Resampling.LANCZOS)
            for fmt in ("JPEG", "WEBP"):
                variant.save(io.BytesIO(), fmt, quality=82)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


@dataclass(frozen=True)
class Rule:
    name: str
    target: float
    count_in_flight: bool


def rules_for(service: Service, job_seconds: float) -> list[Rule | None]:
    """Fixed capacity, the visible-only rule, and the deployed rule (None: fixed)."""
    rules: list[Rule | None] = [None]
    if service.target is not None:
        # Acceptable wait: 5 s, or half a job for long ones.
        visible_target = service.concurrency * max(5.0, job_seconds / 2) / job_seconds
        rules.append(Rule("visible", visible_target, count_in_flight=False))
        rules.append(Rule("deployed", service.target, count_in_flight=True))
    return rules


@dataclass
class Task:
    ready_at: int
    free_at: list[float] = field(default_factory=list)  # per pool slot: when it is free
    stopping: bool = False

    def busy(self, now: float) -> bool:
        return any(t > now for t in self.free_at)


@dataclass
class Result:
    drained_at: int | None
    peak_tasks: int
    task_seconds: int
    max_wait: float
    p95_wait: float
    p95_wait_settled: float  # jobs enqueued after the first SETTLE_SECONDS
    minutes_over_target: int  # minutes with the rule's metric above its target
    waiting_per_task_p95_settled: float
    scale_events: int


def simulate(
    service: Service,
    *,
    initial_tasks: int,
    backlog: int,
    job_seconds: float,
    arrivals_per_second: float = 0.0,
    arrivals_for: int = 0,
    rule: Rule | None = None,
    horizon: int = 6 * 3600,
    seed: int = 1,
) -> Result:
    rng = random.Random(seed)
    waiting: deque[int] = deque([0] * backlog)  # enqueue time of each visible message
    tasks = [Task(ready_at=0) for _ in range(initial_tasks)]
    datapoints: list[float] = []  # the rule's metric, one per minute
    last_scale_out = last_scale_in = -(10**9)
    waits: list[float] = []
    settled_waits: list[float] = []
    scale_events = 0
    settled_waiting: list[float] = []
    peak = initial_tasks
    task_seconds = 0
    over_target = 0
    drained_at = None
    arrival_credit = 0.0

    for now in range(horizon):
        if now < arrivals_for:
            arrival_credit += arrivals_per_second
            while arrival_credit >= 1:
                waiting.append(now)
                arrival_credit -= 1
        tasks = [t for t in tasks if not (t.stopping and not t.busy(now))]
        running = [t for t in tasks if t.ready_at <= now]
        for task in running:
            if task.stopping:
                continue
            if not task.free_at:
                task.free_at = [float(now)] * service.concurrency
            # Each pool slot takes the next message as soon as it is free, within this second.
            for slot, free_at in enumerate(task.free_at):
                start = max(free_at, now)
                while waiting and start < now + 1:
                    enqueued = waiting.popleft()
                    waits.append(start - enqueued)
                    if enqueued >= SETTLE_SECONDS:
                        settled_waits.append(start - enqueued)
                    start += rng.lognormvariate(math.log(job_seconds), 0.3)
                task.free_at[slot] = start
        task_seconds += len(tasks)
        peak = max(peak, len(tasks))

        busy = any(t.busy(now) for t in tasks)
        if drained_at is None and not waiting and not busy and now >= arrivals_for:
            drained_at = now
            if rule is None:
                break

        if now % 60 == 59:
            running_tasks = max(1, len(running))
            in_flight = sum(sum(1 for f in t.free_at if f > now) for t in tasks)
            if now >= SETTLE_SECONDS:
                settled_waiting.append(len(waiting) / running_tasks)
            if rule is not None:
                counted = len(waiting) + (in_flight if rule.count_in_flight else 0)
                datapoints.append(counted / running_tasks)
                over_target += datapoints[-1] > rule.target
        if rule is None or now % 60 != 59:
            if drained_at is not None and now > drained_at + 20 * 60:
                break
            continue

        # The policy sees datapoints a minute late.
        seen = datapoints[: -(METRIC_LAG_SECONDS // 60)] if METRIC_LAG_SECONDS else datapoints
        if not seen:
            continue
        running_count = max(1, len([t for t in tasks if not t.stopping and t.ready_at <= now]))
        active = [t for t in tasks if not t.stopping]
        desired = min(
            service.max_tasks,
            max(1, math.ceil(seen[-1] * running_count / rule.target)),
        )
        recent = seen[-SCALE_OUT_DATAPOINTS:]
        if (
            len(recent) == SCALE_OUT_DATAPOINTS
            and all(d > rule.target for d in recent)
            and desired > len(active)
            and now - last_scale_out >= service.scale_out_cooldown
        ):
            tasks += [Task(ready_at=now + TASK_START_SECONDS) for _ in range(desired - len(active))]
            last_scale_out = now
            scale_events += 1
        quiet = seen[-SCALE_IN_DATAPOINTS:]
        if (
            len(quiet) == SCALE_IN_DATAPOINTS
            and all(d < 0.9 * rule.target for d in quiet)
            and desired < len(active)
            and now - last_scale_in >= service.scale_in_cooldown
            and now - last_scale_out >= service.scale_out_cooldown
        ):
            # Scale in conservatively: one task per action.
            for task in active[max(desired, len(active) - 1) :]:
                task.stopping = True
            last_scale_in = now
            scale_events += 1
        if drained_at is not None and len(active) <= 1 and now > drained_at:
            break

    return Result(
        drained_at=drained_at,
        peak_tasks=peak,
        task_seconds=task_seconds,
        max_wait=max(waits, default=0),
        p95_wait=p95(waits),
        p95_wait_settled=p95(settled_waits),
        minutes_over_target=over_target,
        waiting_per_task_p95_settled=p95(settled_waiting),
        scale_events=scale_events,
    )


def p95(values: list[float]) -> float:
    return float(sorted(values)[int(0.95 * (len(values) - 1))]) if values else 0.0


def minutes(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds / 60:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--default-seconds", type=float, default=1.0)
    parser.add_argument("--media-seconds", type=float, help="default: measured here")
    parser.add_argument("--infra-seconds", type=float, default=180.0)
    args = parser.parse_args()

    services = services_from_template()
    media_seconds = args.media_seconds or measure_media_job_seconds()
    job_seconds = {"default": args.default_seconds, "media": media_seconds}
    job_seconds["infra"] = args.infra_seconds
    print("per-job cost (s): " + ", ".join(f"{q} {s:.2f}" for q, s in job_seconds.items()))
    print(f"  (media measured here: {media_seconds:.3f} s per cover, 4 variants from 12 MP)")
    for queue in job_seconds:
        s = services[queue]
        print(
            f"  {queue}: {s.vcpu:g} vCPU / {s.memory_gb:g} GB, concurrency {s.concurrency}, "
            f"max {s.max_tasks} tasks, deployed target {s.target:g} messages/task, "
            f"${s.price_per_task_second * 3600:.4f}/task-hour"
        )

    scenarios = [
        # queue, initial tasks N, backlog M, then steady arrivals per second for how long
        ("default", 1, 1_000, 0.0, 0),
        ("default", 1, 20_000, 0.0, 0),
        ("default", 2, 100_000, 0.0, 0),
        ("default", 1, 0, 12.0, 3 * 3600),
        ("media", 1, 500, 0.0, 0),
        ("media", 1, 20_000, 0.0, 0),
        ("media", 1, 0, 30.0, 3 * 3600),
        ("infra", 1, 20, 0.0, 0),
        ("infra", 1, 200, 0.0, 0),
        ("infra", 1, 0, 0.05, 3 * 3600),
    ]
    header = (
        f"{'queue':7} {'N':>2} {'M':>6} {'in/s':>4} {'rule':8} {'target':>6} {'drain min':>9} "
        f"{'peak':>4} {'task-h':>6} {'cost $':>6} {'p95 wait':>8} {'max wait':>8} "
        f"{'p95 wait*':>9} {'waiting/task p95*':>17} {'min>target':>10} {'scalings':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for queue, n, m, rate, duration in scenarios:
        service = services[queue]
        for rule in rules_for(service, job_seconds[queue]):
            result = simulate(
                service,
                initial_tasks=n,
                backlog=m,
                job_seconds=job_seconds[queue],
                arrivals_per_second=rate,
                arrivals_for=duration,
                rule=rule,
            )
            cost = result.task_seconds * service.price_per_task_second
            print(
                f"{queue:7} {n:>2} {m:>6} {rate:>4g} {rule.name if rule else 'fixed N':8} "
                f"{f'{rule.target:.3g}' if rule else '-':>6} {minutes(result.drained_at):>9} "
                f"{result.peak_tasks:>4} {result.task_seconds / 3600:>6.2f} {cost:>6.3f} "
                f"{result.p95_wait:>8.0f} {result.max_wait:>8.0f} "
                f"{result.p95_wait_settled:>9.0f} {result.waiting_per_task_p95_settled:>17.1f} "
                f"{result.minutes_over_target if rule else '-':>10} {result.scale_events:>8}"
            )
        print()
    print(
        "N: tasks at the start; M: messages waiting at the start; in/s: steady arrivals (for "
        "3 h). rule: fixed N tasks; 'visible': visible messages per task; 'deployed': visible "
        "+ in flight per task (the template's). drain min: until the queue is empty and "
        "nothing runs ('never': not within 6 h). task-h, cost: until the service is back at "
        "its minimum. Waits in seconds. *: after the first 15 minutes (steady state). "
        "min>target: minutes with the rule's metric above its target."
    )


if __name__ == "__main__":
    main()
