"""The admin site: /admin/ is the Jobs home, and the apps are grouped by what a person does.

Django lists models by the library they come from ("Celery Results → Task results",
"Periodic tasks → Crontabs"). A person comes to start or watch a job, run terraform, stop a
database, release, or look after courses: the index and the side bar list those sections.
A model no section names (a new app's) keeps its app's own group after them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django_celery_results.models import TaskResult

from workers import display, families
from workers.admin_base import action_refusal
from workers.admin_links import operations_url_for
from workers.families import housekeeping_task_names
from workers.flower_accounts import VIEW_PERMISSION as FLOWER_VIEW_PERMISSION
from workers.operations import idle_queues_with_waiting_jobs
from workers.outbox import broker_health, missing_queue_note
from workers.recurring import recurring_tasks

RECENT_JOBS = 15
VIEW_SCHEDULES = "django_celery_beat.view_periodictask"


@dataclass(frozen=True)
class Section:
    name: str
    slug: str
    # (app_label.ObjectName, the name shown; None keeps the model's own)
    models: tuple[tuple[str, str | None], ...]


SECTIONS = (
    Section(
        "Jobs",
        "jobs",
        (
            ("django_celery_results.TaskResult", "Jobs"),
            ("workers.DiagnosticRun", None),
            ("workers.QueueDepth", "Queue depths"),
            ("workers.WorkerHeartbeat", None),
            ("workers.DeadLetterAction", None),
            ("workers.FlowerAction", None),
            ("django_celery_results.GroupResult", None),
        ),
    ),
    Section(
        "Terraform",
        "terraform",
        (("terraform.TerraformWorkspace", "Workspaces"), ("terraform.TerraformRun", "Runs")),
    ),
    Section(
        "Databases",
        "databases",
        (
            ("rds.ManagedDatabase", None),
            ("rds.DatabaseAction", None),
            ("rds.Divergence", None),
        ),
    ),
    Section("Releases", "releases", (("releases.Release", "Releases (migrations)"),)),
    Section(
        "Courses",
        "courses",
        (
            ("courses.Course", None),
            ("courses.Section", None),
            ("courses.Lesson", None),
            ("courses.Enrolment", None),
            ("courses.LessonCompletion", None),
        ),
    ),
    Section(
        "Infrastructure", "infrastructure", (("dashboard.EcsServiceSnapshot", "ECS services"),)
    ),
    Section(
        "Schedules",
        "schedules",
        (
            ("django_celery_beat.PeriodicTask", None),
            ("django_celery_beat.CrontabSchedule", None),
            ("django_celery_beat.IntervalSchedule", None),
            ("django_celery_beat.ClockedSchedule", None),
            ("django_celery_beat.SolarSchedule", None),
        ),
    ),
    Section("Accounts", "accounts", (("auth.User", None), ("auth.Group", None))),
)


def app_list_grouped(app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Django's app list regrouped into SECTIONS; models no section names stay in their app."""
    by_label: dict[str, dict[str, Any]] = {}
    for app in app_list:
        for model in app["models"]:
            by_label[model["model"]._meta.label] = model
    placed: set[str] = set()
    grouped = []
    for section in SECTIONS:
        models = []
        for label, name in section.models:
            model = by_label.get(label)
            if model is None:
                continue  # not registered, or this user may not see it
            models.append({**model, "name": name or model["name"]})
            placed.add(label)
        if models:
            grouped.append(
                {
                    "name": section.name,
                    "app_label": section.slug,
                    "app_url": next((m["admin_url"] for m in models if m["admin_url"]), ""),
                    "has_module_perms": True,
                    "models": models,
                }
            )
    for app in app_list:
        rest = [m for m in app["models"] if m["model"]._meta.label not in placed]
        if rest:
            grouped.append({**app, "models": rest})
    return grouped


@dataclass(frozen=True)
class RecentJob:
    task_id: str
    url: str
    name: str
    family: str
    status: str
    state: str
    requester: str
    created_at: Any
    duration: str


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    note: str


class OpsqueueAdminSite(admin.AdminSite):
    site_header = "opsqueue"
    site_title = "opsqueue admin"
    index_title = "Jobs home"
    # There is no public site to view: the platform's pages are not part of opsqueue.
    site_url = None
    # A name of its own: an "admin/index.html" in an app is shadowed by Django's.
    index_template = "admin/opsqueue/index.html"

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        """Every model admin's list, its own and the libraries' alike, refuses an action the
        user is not offered with a message saying so (workers/admin_base.action_refusal)."""
        model_admin = getattr(view, "__self__", None)
        if isinstance(model_admin, admin.ModelAdmin) and view.__name__ == "changelist_view":
            list_view = view

            @wraps(list_view)
            def view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = action_refusal(model_admin, request)
                return refused or list_view(request, *args, **kwargs)

        return super().admin_view(view, cacheable)

    def logout(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """/admin/logout/ typed or bookmarked is a GET, which Django's logout view answers
        405 with an empty body: the browser showed its own "This page isn't working". The GET
        offers the Log out button instead; logging out stays a POST (no link logs anyone out)."""
        if request.method in ("GET", "HEAD"):
            context = {**self.each_context(request), "title": "Log out?", **(extra_context or {})}
            return TemplateResponse(request, "admin/opsqueue/logout_confirm.html", context)
        return super().logout(request, extra_context)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        app_list = super().get_app_list(request, app_label)
        # An app's own page (/admin/<app>/, the breadcrumbs' target) lists just that app.
        return app_list if app_label else app_list_grouped(app_list)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        recent = self.recent_jobs(request)
        # Jobs waiting where no worker consumes would read "Queued" for ever: say why.
        idle = idle_queues_with_waiting_jobs() if recent is not None else []
        # In an SQS outage the workers receive nothing either: SQS is the cause to name,
        # not the workers (asked only then: one cheap probe, or its cached answer).
        sqs_cause = (
            (broker_health.unreachable_cause() or broker_health.missing_queue_error())
            if idle
            else None
        )
        context = {
            **(extra_context or {}),
            "recent_jobs": recent,
            "idle_queues": idle,
            "sqs_unreachable": sqs_cause,
            "sqs_queue_missing": missing_queue_note(sqs_cause),
            "operations_url": operations_url_for(request.user),
            "can_run_diagnostic": request.user.has_perm("workers.run_diagnostic"),
            "jobs_url": reverse("admin:django_celery_results_taskresult_changelist"),
            "places": self.places(request),
            "starts": self.starts(request),
            **self.recurring(request),
        }
        response: TemplateResponse = super().index(request, context)
        return response

    def recurring(self, request: HttpRequest) -> dict[str, Any]:
        """The schedules (None: the user may not see them) and the ids of those whose
        "Run now" this user may press: the permission to run schedules, and the operate
        permission of the family each one starts."""
        user = request.user
        if not user.has_perm(VIEW_SCHEDULES):
            return {"recurring": None, "runnable": set()}
        rows = recurring_tasks()
        runnable = (
            {r.pk for r in rows if families.job_startable(user, r.task)}
            if user.has_perm("workers.run_recurring_now")
            else set()
        )
        return {"recurring": rows, "runnable": runnable}

    def recent_jobs(self, request: HttpRequest) -> list[RecentJob] | None:
        """The latest jobs this user may see, beat's bookkeeping left out, through the jobs
        admin's own queryset and permission checks (None: the user may not see jobs)."""
        jobs_admin: Any = self._registry.get(TaskResult)
        if jobs_admin is None or not jobs_admin.has_view_permission(request):
            return None
        rows = (
            jobs_admin.get_queryset(request)
            .exclude(task_name__in=housekeeping_task_names())
            .order_by("-date_created")[:RECENT_JOBS]
        )
        return [
            RecentJob(
                task_id=row.task_id,
                url=reverse("admin:django_celery_results_taskresult_change", args=[row.pk]),
                name=display.task_short_name(row.task_name),
                family=display.job_family(row.task_name),
                status=row.status,
                state=display.state_label(row.status),
                requester=jobs_admin.requester(row),
                created_at=row.date_created,
                duration=jobs_admin.duration(row),
            )
            for row in rows
        ]

    def places(self, request: HttpRequest) -> list[Link]:
        user = request.user
        places = []
        operations_url = operations_url_for(user)
        if operations_url:
            places.append(
                Link("Operations", operations_url, "queue depths, workers, failures and durations")
            )
        if user.has_perm("dashboard.view_dashboard"):
            places.append(
                Link(
                    "Infrastructure",
                    reverse("dashboard:infrastructure"),
                    "managed databases, ECS services, latest terraform runs",
                )
            )
        # Flower lets in the same people as the operations page (workers/flower_accounts.py):
        # anyone else would follow the link to a refusal.
        if settings.FLOWER_URL and user.has_perm(FLOWER_VIEW_PERMISSION):
            places.append(
                Link("Flower", settings.FLOWER_URL, "live workers and tasks; revoke, pool size")
            )
        return places

    def starts(self, request: HttpRequest) -> list[Link]:
        """Where each kind of job is started, for the families this user may start and
        whose starting page opens for them (a list of records needs its view permission:
        the operate permission alone led to a 403)."""
        user = request.user
        candidates = [
            (
                "terraform.plan_terraformworkspace",
                "Plan a terraform workspace",
                "admin:terraform_terraformworkspace_changelist",
                "open a workspace, press Plan; approve the plan on its run page",
            ),
            (
                "rds.operate_manageddatabase",
                "Stop or start a database",
                "admin:rds_manageddatabase_changelist",
                "select databases, choose an action (stop, start, keep running until…)",
            ),
            (
                "releases.run_release",
                "Run pending migrations",
                "admin:releases_release_run",
                "preview the plan, then run it as a release",
            ),
            (
                "courses.change_course",
                "Upload a course cover",
                "admin:courses_course_changelist",
                "open a course, upload a cover; its variants appear on the page",
            ),
        ]
        starts = []
        for perm, label, url_name, note in candidates:
            if not user.has_perm(perm) or not self.opens_for(request, url_name):
                continue
            try:
                starts.append(Link(label, reverse(url_name), note))
            except NoReverseMatch:
                continue
        return starts

    def opens_for(self, request: HttpRequest, url_name: str) -> bool:
        """Whether a model admin's list (`admin:<app>_<model>_changelist`) opens for this
        user; any other page checks its own permission."""
        for model, model_admin in self._registry.items():
            opts = model._meta
            if url_name == f"admin:{opts.app_label}_{opts.model_name}_changelist":
                return bool(model_admin.has_view_or_change_permission(request))
        return True
