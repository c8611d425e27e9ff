"""Terraform workspaces and their runs.

A run moves through plan → (approval) → apply. At most one run per workspace is *active*
(from being queued on SQS until it ends, including while its plan waits for approval, as
HCP Terraform does): a partial unique constraint holds that, and later runs wait in FIFO
order until the active one ends.

Nothing a later step needs is on a worker's disk: the run records where its saved plan and
its configuration bundle are in S3, their hashes, and the inputs it was planned with.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from workers.models import RequesterFields


class TerraformWorkspace(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    directory = models.CharField(
        max_length=255,
        unique=True,
        help_text="Relative to TERRAFORM_ROOT; paths that resolve outside it are refused.",
    )
    variables = models.JSONField(
        default=dict, blank=True, help_text="Non-secret input variables, as a JSON object."
    )
    require_distinct_approver = models.BooleanField(
        default=False,
        help_text="Four eyes: a plan must be approved by someone other than the requester.",
    )
    run_time_limit_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds a plan or apply may run (default: TERRAFORM_RUN_TIME_LIMIT_SECONDS).",
    )
    notify = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="Staff e-mailed when drift is found (default: every active staff member).",
    )
    outputs = models.JSONField(default=dict, blank=True, editable=False)
    drifted = models.BooleanField(default=False, editable=False)
    drift_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a destroy is applied, cleared by the next apply: everything the workspace
    # manages was removed on purpose, and a drift check would only flag its absence.
    destroyed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [
            ("plan_terraformworkspace", "Can queue terraform plans"),
            ("apply_terraformworkspace", "Can approve and apply terraform plans"),
            ("destroy_terraformworkspace", "Can plan and approve terraform destroy"),
            ("force_unlock_terraformworkspace", "Can force-unlock terraform state"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(run_time_limit_seconds__isnull=True) | Q(run_time_limit_seconds__gte=1),
                name="terraform_workspace_time_limit_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SecretSource(models.TextChoices):
    ENV = "env", "Environment variable"
    SSM = "ssm", "SSM parameter"
    SECRETS_MANAGER = "secretsmanager", "Secrets Manager secret"


class TerraformSecret(models.Model):
    """A secret input variable given by reference; the value is resolved in the worker only."""

    workspace = models.ForeignKey(
        TerraformWorkspace, on_delete=models.CASCADE, related_name="secrets"
    )
    variable = models.CharField(max_length=100, help_text="The terraform variable name.")
    source = models.CharField(max_length=16, choices=SecretSource.choices)
    reference = models.CharField(
        max_length=512, help_text="Variable name, parameter name or secret name/ARN."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "variable"], name="terraform_secret_unique_variable"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.variable} ← {self.get_source_display()} {self.reference}"


class RunKind(models.TextChoices):
    APPLY = "apply", "Plan and apply"
    DESTROY = "destroy", "Plan and destroy"
    DRIFT_CHECK = "drift", "Drift check"


class RunState(models.TextChoices):
    WAITING = "waiting", "Waiting for the workspace"
    QUEUED = "queued", "Queued"
    PLANNING = "planning", "Planning"
    PLANNED = "planned", "Planned: needs approval"
    APPLY_QUEUED = "apply_queued", "Approved: apply queued"
    APPLYING = "applying", "Applying"
    NO_CHANGES = "no_changes", "No changes"
    APPLIED = "applied", "Applied"
    DRIFTED = "drifted", "Drift found"
    DISCARDED = "discarded", "Discarded"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"
    LOST = "lost", "Worker lost — check the state"


ACTIVE_STATES = (
    RunState.QUEUED,
    RunState.PLANNING,
    RunState.PLANNED,
    RunState.APPLY_QUEUED,
    RunState.APPLYING,
)
FINISHED_STATES = (
    RunState.NO_CHANGES,
    RunState.APPLIED,
    RunState.DRIFTED,
    RunState.DISCARDED,
    RunState.CANCELLED,
    RunState.FAILED,
    RunState.LOST,
)
# A worker process is at work on the run in these states.
WORKING_STATES = (RunState.PLANNING, RunState.APPLYING)


class TerraformRun(RequesterFields):
    workspace = models.ForeignKey(TerraformWorkspace, on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    state = models.CharField(max_length=16, choices=RunState.choices)
    message = models.TextField(blank=True)
    # requester_kind, requester_label, requested_by: RequesterFields.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # Set by a cancel and by a discard (a plan left unapproved): named for both on the page,
    # where a discarded plan read "Cancel requested by".
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="cancelled or discarded by",
    )
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, verbose_name="cancel or discard asked at"
    )

    plan_task_id = models.CharField(max_length=255, blank=True, db_index=True)
    apply_task_id = models.CharField(max_length=255, blank=True, db_index=True)
    # The saved plan (S3 key, removed once applied or superseded) and its hash.
    plan_key = models.CharField(max_length=512, blank=True)
    plan_sha256 = models.CharField(max_length=64, blank=True)
    plan_summary = models.JSONField(null=True, blank=True)
    # What the plan was made from: the configuration's digest, the bundle the apply unpacks
    # (S3 key and hash), and the variables (secrets by reference only).
    config_sha256 = models.CharField(max_length=64, blank=True)
    bundle_key = models.CharField(max_length=512, blank=True)
    bundle_sha256 = models.CharField(max_length=64, blank=True)
    plan_inputs = models.JSONField(null=True, blank=True)
    # Where opsqueue's s3 backend keeps the state; empty when the configuration declares
    # another backend, which then keeps it.
    state_key = models.CharField(max_length=512, blank=True)
    # A state lock a lost worker left behind (terraform's lock info), once looked for.
    state_lock = models.JSONField(null=True, blank=True)
    state_lock_checked_at = models.DateTimeField(null=True, blank=True)
    unlock_task_id = models.CharField(max_length=255, blank=True)
    # What each resource will do (plan_changes.plan_changes), sensitive values already hidden.
    plan_changes = models.JSONField(null=True, blank=True)

    # Who is at work on it, and the last sign of life: a redelivered message for a run in
    # progress on a worker that stopped beating must not start a second apply.
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"],
                condition=Q(state__in=ACTIVE_STATES),
                name="terraform_one_active_run_per_workspace",
            ),
            models.CheckConstraint(
                condition=Q(state__in=[s.value for s in RunState]),
                name="terraform_run_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(approved_at__isnull=True) | Q(plan_task_id__gt=""),
                name="terraform_run_approved_after_plan",
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("created_at")),
                name="terraform_run_finished_after_created",
            ),
        ]
        indexes = [
            models.Index(fields=["workspace", "state", "id"], name="terraform_run_queue_idx")
        ]

    def __str__(self) -> str:
        return f"{self.workspace} #{self.pk} {self.get_kind_display()}"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def current_task_id(self) -> str:
        return self.apply_task_id or self.plan_task_id
