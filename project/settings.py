"""opsqueue settings: every value that differs between machines comes from the environment.

`.env.example` documents each variable. Development defaults are safe; secrets have no
production default (DJANGO_SECRET_KEY is required when DEBUG is off).

Over 350 lines on purpose: one flat module, in sections by family (marked `# --- … ---`), so
every setting is found with one search and later sections can read earlier values.
"""

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import django
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is a convenience for developers; the process environment always wins.
env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-development-only-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "workers.apps.OpsqueueAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    "workers",
    "courses",
    "media_pipeline",
    "infra_tasks.terraform",
    "infra_tasks.rds",
    "infra_tasks.releases",
    "infra_tasks.dashboard",
]
# Django's Tasks API: built in from Django 6; before it, the django-tasks backport (an app).
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Jobs enqueued through Django's Tasks API name the request's user (workers/requesters.py).
    "workers.requesters.RequesterMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:
    # Static files from the app server in production (collectstatic in the image); in
    # development the staticfiles app serves them.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

# Database sessions (logging out ends a session everywhere at once), read with one fixed
# statement instead of an ORM query built per request (project/sessions.py).
SESSION_ENGINE = "project.sessions"
# Django's ModelBackend, the signed-in user read with one fixed statement
# (project/auth_backends.py).
AUTHENTICATION_BACKENDS = ["project.auth_backends.UserBackend"]
# Where a login goes when its `next` is missing, empty or another site's (refused): the
# Jobs home. Django's default, /accounts/profile/, is no page here and answered 404.
LOGIN_REDIRECT_URL = "admin:index"

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # First: project/templates/admin/base_site.html adds to Django's own (every admin page).
        "DIRS": [BASE_DIR / "project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

# SQLite is the zero-setup default; PostgreSQL in CI and production.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# On ECS the password is injected from Secrets Manager as its own variable, so the URL
# (plain task configuration) carries no secret.
if env.str("DATABASE_PASSWORD", default=""):
    DATABASES["default"]["PASSWORD"] = env.str("DATABASE_PASSWORD")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, workers and beat write concurrently: WAL lets readers run beside one writer,
    # IMMEDIATE takes the write lock up front instead of failing on upgrade, and the
    # timeout makes a second writer wait rather than raise "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A database that black-holes traffic (a failover mid-way, a dropped route) must fail a
    # connection attempt in seconds, and a connection whose server is gone must be noticed:
    # without these a request, a heartbeat or a job waited for the operating system's TCP
    # timeouts, many minutes. Options in DATABASE_URL's query string win.
    DATABASES["default"].setdefault("OPTIONS", {})
    for option, value in {
        "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=10),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }.items():
        DATABASES["default"]["OPTIONS"].setdefault(option, value)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Times in the admin read "2026-12-03 13:21:44 UTC": the zone is always named.
FORMAT_MODULE_PATH = ["project.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=BASE_DIR / "media")

STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="opsqueue@localhost")

# Production hardening; `manage.py check --deploy` is clean when DEBUG is off.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            # The process's own stderr, not whatever sys.stderr is when Django sets logging
            # up: in beat that is after Celery pointed sys.stderr at its logger, and every
            # line (a schedule sent, beat's own crash) went round to it and was dropped.
            "stream": "ext://sys.__stderr__",
        }
    },
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    # boto announces where it found credentials on every client; that is noise, not news.
    "loggers": {
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
    },
}

# --- AWS -------------------------------------------------------------------------------------
# Local development and tests point every client at one AWS-compatible endpoint through
# AWS_ENDPOINT_URL (read by boto3 itself); nothing here overrides it.
AWS_REGION = env.str("AWS_REGION", default=env.str("AWS_DEFAULT_REGION", default="us-east-1"))

# --- Celery (namespace CELERY_; the app reads these in workers/celery.py) --------------------
SQS_QUEUE_PREFIX = env.str("SQS_QUEUE_PREFIX", default="opsqueue-")
# In production the queues exist already (CloudFormation): set the account's queue URL base,
# e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/, and kombu never lists or creates.
SQS_QUEUE_URL_BASE = env.str("SQS_QUEUE_URL_BASE", default="")

# Every queue's visibility timeout. Short, so a job whose worker died is delivered again
# within about this long; a worker extends what it holds every third of it (see
# workers/visibility.py), so a long job is never delivered twice while its worker lives.
SQS_VISIBILITY_TIMEOUT_SECONDS = env.int("SQS_VISIBILITY_TIMEOUT_SECONDS", default=90)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="sqs://")
# sqs:// URLs use kombu's SQS transport with a consumer loop that survives failed polls
# (kombu issue 1127; workers/sqs_transport.py, registered in workers/celery.py).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS_REGION,
    "queue_name_prefix": SQS_QUEUE_PREFIX,
    # Long polling saves requests in production; tests use 0 because a long poll in
    # flight when a worker stops strands the messages it receives.
    "wait_time_seconds": env.int("SQS_WAIT_TIME_SECONDS", default=10),
    "polling_interval": env.float("SQS_POLLING_INTERVAL", default=1.0),
    # Only used if kombu has to create a queue itself; our queues are created by
    # `manage.py sqs_queues` (dev) or CloudFormation (production) with the same timeout.
    "visibility_timeout": SQS_VISIBILITY_TIMEOUT_SECONDS,
    # Fail fast when the broker is unreachable so the request can report it. This boto3
    # client sends (SendMessage) and acknowledges (DeleteMessage, synchronously on the
    # worker's event loop: a hung SQS froze the worker for read_timeout x attempts, a minute
    # at 30 s). It never receives: the worker's long polls go through kombu's own async
    # client (workers/sqs_transport.py), with a 20 s timeout of its own, so read_timeout
    # need not outlast wait_time_seconds.
    "client-config": {
        "connect_timeout": env.float("SQS_CONNECT_TIMEOUT", default=3.0),
        "read_timeout": env.float("SQS_READ_TIMEOUT", default=5.0),
        "retries": {"mode": "standard", "max_attempts": 2},
    },
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_POOL_LIMIT = 10

CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = timedelta(days=env.int("JOB_RESULT_EXPIRES_DAYS", default=30))

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# A task whose worker dies is delivered again instead of being acknowledged as failed.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=200)

CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "workers.beat:RecordingDatabaseScheduler"
# Save an entry's last run as soon as it is sent (workers/beat.py), not every three minutes.
CELERY_BEAT_SYNC_EVERY = 1
# SQS carries no events; the monitoring channel (CELERY_MONITOR_URL, below) does. The web
# process publishes nothing there, so there are no task-sent events.
CELERY_TASK_SEND_SENT_EVENT = False

# --- Django's Tasks API (workers/tasks_backend.py) -------------------------------------------
# Any app's @task runs as an opsqueue job; its queue_name must be one of these Celery queues.
TASKS = {
    "default": {
        "BACKEND": "workers.tasks_backend.OpsqueueBackend",
        "QUEUES": ["default", "media"],
    }
}

# --- Job logs ------------------------------------------------------------------------------
JOB_LOG_FLUSH_LINES = env.int("JOB_LOG_FLUSH_LINES", default=200)
JOB_LOG_FLUSH_SECONDS = env.float("JOB_LOG_FLUSH_SECONDS", default=0.25)
# A longer line is stored cut, with a marker saying how much was dropped: one runaway line
# (a 50 MB blob on one line) must not fill the database, a worker's memory or a page.
JOB_LOG_MAX_LINE_BYTES = env.int("JOB_LOG_MAX_LINE_BYTES", default=64 * 1024)
# One poll of a job's log answers with about this much text at most; the page asks again.
JOB_LOG_MAX_POLL_BYTES = env.int("JOB_LOG_MAX_POLL_BYTES", default=1024 * 1024)

# --- Media storage and cover images (courses, media_pipeline) --------------------------------
# Local files by default. With a bucket, media go to S3: private objects (the bucket blocks
# public access; nothing sets a public ACL) reached only through short-lived presigned URLs.
# boto3 finds the endpoint (AWS_ENDPOINT_URL in development and tests) and credentials itself.
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {
        # django-storages' S3Storage, serving each object with the type of its stored name.
        "BACKEND": "media_pipeline.storage.MediaS3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "region_name": AWS_REGION,
            "location": env.str("AWS_MEDIA_LOCATION", default="media"),
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": env.int("AWS_QUERYSTRING_EXPIRE", default=300),
            "signature_version": "s3v4",
            # Names are content-addressed: an existing key already holds these exact bytes.
            "file_overwrite": True,
            # A large original is spooled to disk while the worker reads it, not held in RAM.
            "max_memory_size": 2 * 1024 * 1024,
        },
    }
# Every media S3 call: how long to wait to connect, how long for S3 to answer a read, and
# attempts in all. A cover upload's request waits on one quick check (no retry) and then on
# storing the original, so these bound how long an S3 that hangs holds a person's request.
MEDIA_S3_CONNECT_TIMEOUT = env.float("MEDIA_S3_CONNECT_TIMEOUT", default=3.0)
MEDIA_S3_READ_TIMEOUT = env.float("MEDIA_S3_READ_TIMEOUT", default=10.0)
MEDIA_S3_ATTEMPTS = env.int("MEDIA_S3_ATTEMPTS", default=2)
# Images with more pixels than this are refused from their header, before decoding.
MEDIA_MAX_IMAGE_PIXELS = env.int("MEDIA_MAX_IMAGE_PIXELS", default=50_000_000)
# Larger cover uploads are refused on the form, and by the worker before opening them: WebP,
# HEIC and AVIF are read whole (twice over) before their header can be judged, so a small
# picture followed by a gigabyte of padding cost the worker two gigabytes.
MEDIA_MAX_UPLOAD_BYTES = env.int("MEDIA_MAX_UPLOAD_BYTES", default=64 * 1024 * 1024)
# Past that limit an upload is counted, not spooled to the web server's disk (project/uploads.py).
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "project.uploads.CappedTemporaryFileUploadHandler",
]
# A replaced cover's files stay this long (pages and API answers made just before still point
# at them), then the sweep that runs every MEDIA_RETIRED_FILES_SWEEP_SECONDS deletes them.
MEDIA_RETIRED_FILE_GRACE_SECONDS = env.int("MEDIA_RETIRED_FILE_GRACE_SECONDS", default=600)
MEDIA_RETIRED_FILES_SWEEP_SECONDS = env.int("MEDIA_RETIRED_FILES_SWEEP_SECONDS", default=300)
# HEIC and AVIF cannot be decoded reduced: above this many pixels their decodes run one at a
# time per machine (media_pipeline.decode_slots), so two never add up on one media worker.
MEDIA_WHOLE_DECODE_BUDGET_PIXELS = env.int("MEDIA_WHOLE_DECODE_BUDGET_PIXELS", default=16_000_000)

# --- Managed databases (RDS schedules) and the infrastructure dashboard ----------------------
# Enforcement re-checks every managed database this often (it also refreshes the dashboard).
RDS_ENFORCE_INTERVAL_SECONDS = env.int("RDS_ENFORCE_INTERVAL_SECONDS", default=300)
# A stop/start that meets a transitional state (backing-up, modifying, ...) looks again this
# many times, waiting base * 2**n seconds between looks, at most max seconds.
RDS_RETRY_ATTEMPTS = env.int("RDS_RETRY_ATTEMPTS", default=8)
RDS_RETRY_BASE_SECONDS = env.float("RDS_RETRY_BASE_SECONDS", default=15.0)
RDS_RETRY_MAX_SECONDS = env.float("RDS_RETRY_MAX_SECONDS", default=300.0)
RDS_THROTTLE_ATTEMPTS = env.int("RDS_THROTTLE_ATTEMPTS", default=6)
# Waiting for the target state: how often to look, and for how long at most.
RDS_POLL_SECONDS = env.float("RDS_POLL_SECONDS", default=15.0)
RDS_WAIT_TIMEOUT_SECONDS = env.float("RDS_WAIT_TIMEOUT_SECONDS", default=3600.0)
# The ECS cluster whose services the dashboard shows; empty shows none.
ECS_CLUSTER = env.str("ECS_CLUSTER", default="")
ECS_REFRESH_INTERVAL_SECONDS = env.int("ECS_REFRESH_INTERVAL_SECONDS", default=120)

# --- Release migrations (infra_tasks.releases) -----------------------------------------------
# How long a release waits for another release's migration lock before failing.
RELEASE_LOCK_WAIT_SECONDS = env.float("RELEASE_LOCK_WAIT_SECONDS", default=300)
# PostgreSQL lock_timeout / statement_timeout on the migrating connection (PostgreSQL units):
# a migration blocked on a table lock fails after this instead of stalling every query behind it.
RELEASE_DB_LOCK_TIMEOUT = env.str("RELEASE_DB_LOCK_TIMEOUT", default="5s")
RELEASE_DB_STATEMENT_TIMEOUT = env.str("RELEASE_DB_STATEMENT_TIMEOUT", default="15min")
# PostgreSQL 14+ client_connection_check_interval on the migrating connection: a worker killed
# mid-statement has its session (the migration lock, the tables' locks) ended within this,
# not when the statement ends.
RELEASE_DB_CLIENT_CHECK_INTERVAL = env.str("RELEASE_DB_CLIENT_CHECK_INTERVAL", default="2s")

# Tests only: extra apps to install (the release tests' probe app, whose migrations they
# roll back and release again). Set by tests/environment.py; empty everywhere else.
INSTALLED_APPS += env.list("OPSQUEUE_EXTRA_APPS", default=[])

# --- Monitoring (workers/monitoring.py, workers/flower.py, the operations page) ------------
# Redis for worker events and remote control (Flower, `celery inspect`); tasks stay on SQS.
# Empty: workers send no events and answer no remote control.
CELERY_MONITOR_URL = env.str("CELERY_MONITOR_URL", default="")
CELERY_WORKER_CONSUMER = "workers.monitoring:MonitoredConsumer"
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=15.0)
# A consumer proves itself at every poll (at most wait time + polling interval + a request
# timeout apart). Silent longer than this, the operations page calls its worker stalled;
# silent longer than the second, the worker stops (exit code 3) for its supervisor to
# replace it, and its liveness file goes stale for the container health check.
WORKER_CONSUMER_STALLED_SECONDS = env.float("WORKER_CONSUMER_STALLED_SECONDS", default=60.0)
WORKER_CONSUMER_EXIT_SECONDS = env.float("WORKER_CONSUMER_EXIT_SECONDS", default=180.0)
WORKER_LIVENESS_FILE = env.str("WORKER_LIVENESS_FILE", default="")
# How often each worker looks for paused or resumed queues (workers/queue_pauses.py).
QUEUE_PAUSE_CHECK_SECONDS = env.float("QUEUE_PAUSE_CHECK_SECONDS", default=5.0)


# Where people open Flower (behind its own login); the admin's Jobs home links it.
def flower_url_setting(url: str) -> str:
    """FLOWER_URL without any login in it: the link is shown to staff on the Jobs home and
    the operations page, so `https://user:password@flower…` would hand Flower's password to
    all of them. Flower asks each person for their own login instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


FLOWER_URL = flower_url_setting(env.str("FLOWER_URL", default=""))
# The channel exists to carry events: task events are on whenever it is configured.
CELERY_WORKER_SEND_TASK_EVENTS = bool(CELERY_MONITOR_URL)

# --- Terraform ---------------------------------------------------------------------------
# Workspaces name a directory inside TERRAFORM_ROOT; anything resolving outside is refused.
TERRAFORM_ROOT = env.path("TERRAFORM_ROOT", default=BASE_DIR / "terraform")
TERRAFORM_BIN = env.str("TERRAFORM_BIN", default="terraform")
# Workers are disposable: state, saved plans and the configuration bundles runs are pinned to
# live in this S3 bucket, never on a worker's disk. State goes under
# <TERRAFORM_STATE_PREFIX>/<workspace>/terraform.tfstate (terraform's s3 backend, S3 lock
# files); plans and bundles under <TERRAFORM_PLAN_PREFIX>/<workspace>/. Saved plans embed
# variable values, secrets too: only the infra workers may read these prefixes. No default
# bucket: runs fail with a clear message until one is set.
TERRAFORM_STATE_BUCKET = env.str("TERRAFORM_STATE_BUCKET", default="")
TERRAFORM_STATE_PREFIX = env.str("TERRAFORM_STATE_PREFIX", default="state").strip("/")
TERRAFORM_PLAN_PREFIX = env.str("TERRAFORM_PLAN_PREFIX", default="plans").strip("/")
# The local AWS-compatible endpoint, development and tests only (boto3 reads the same
# variables); terraform's s3 backend is pointed at it with path-style addressing.
TERRAFORM_S3_ENDPOINT_URL = env.str(
    "AWS_ENDPOINT_URL_S3", default=env.str("AWS_ENDPOINT_URL", default="")
)
# Where secret variables may come from. A workspace editor names a reference, the worker
# resolves it: without these bounds an editor could read any of the worker's own secrets
# (DJANGO_SECRET_KEY, a database password) through a plan. Environment references must start
# with this prefix; SSM parameter and Secrets Manager names with one of these path prefixes.
TERRAFORM_SECRET_ENV_PREFIX = env.str("TERRAFORM_SECRET_ENV_PREFIX", default="TF_SECRET_")
TERRAFORM_SECRET_SSM_PREFIXES = env.list(
    "TERRAFORM_SECRET_SSM_PREFIXES", default=["/opsqueue/terraform/"]
)
TERRAFORM_SECRET_MANAGER_PREFIXES = env.list(
    "TERRAFORM_SECRET_MANAGER_PREFIXES", default=["opsqueue/terraform/"]
)
# Each plan, apply or unlock runs in a fresh directory under this one, removed afterwards;
# providers are cached per worker (TF_PLUGIN_CACHE_DIR).
TERRAFORM_WORK_DIR = env.path(
    "TERRAFORM_WORK_DIR", default=Path(tempfile.gettempdir()) / "opsqueue-terraform"
)
TERRAFORM_PLUGIN_CACHE_DIR = env.path(
    "TERRAFORM_PLUGIN_CACHE_DIR", default=BASE_DIR / "var" / "terraform-plugin-cache"
)
TERRAFORM_LOCK_TIMEOUT_SECONDS = env.int("TERRAFORM_LOCK_TIMEOUT_SECONDS", default=60)
TERRAFORM_CANCEL_GRACE_SECONDS = env.float("TERRAFORM_CANCEL_GRACE_SECONDS", default=30.0)
TERRAFORM_RUN_TIME_LIMIT_SECONDS = env.int("TERRAFORM_RUN_TIME_LIMIT_SECONDS", default=3600)
TERRAFORM_HEARTBEAT_SECONDS = env.float("TERRAFORM_HEARTBEAT_SECONDS", default=5.0)
# A plan or apply whose worker has not beaten for this long is marked "worker lost" by the
# periodic task "Terraform lost runs", which frees the workspace for the next run.
TERRAFORM_LOST_AFTER_SECONDS = env.float("TERRAFORM_LOST_AFTER_SECONDS", default=120.0)
# Used only with the file-based e-mail backend (the test session's workers write mail there).
EMAIL_FILE_PATH = env.path("DJANGO_EMAIL_FILE_PATH", default=BASE_DIR / "var" / "mail")
