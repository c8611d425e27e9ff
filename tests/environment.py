"""Environment defaults for the test session (loaded with `-p tests.environment`).

A plugin rather than conftest.py because pytest-django reads the settings, which read the
environment, before any conftest is imported.
"""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/opsqueue")
os.environ.setdefault("DJANGO_DEBUG", "true")
# Each session gets its own SQS queue names, so nothing left over is ever received.
os.environ.setdefault("SQS_QUEUE_PREFIX", f"t{os.getpid()}-")
os.environ.setdefault("SQS_WAIT_TIME_SECONDS", "0")
os.environ.setdefault("SQS_POLLING_INTERVAL", "0.1")
os.environ.setdefault("JOB_LOG_FLUSH_SECONDS", "0.2")
os.environ.setdefault("QUEUE_PAUSE_CHECK_SECONDS", "0.5")
# Media written by the tests and by their worker processes (which inherit this) stay out of
# the checkout; courses tests override MEDIA_ROOT per test where they need isolation.
os.environ.setdefault("DJANGO_MEDIA_ROOT", tempfile.mkdtemp(prefix="opsqueue-test-media-"))
os.environ.setdefault(
    "OPSQUEUE_EXTRA_APPS", "tests.infra_tasks.releases.probe,tests.workers.tasks_app"
)


# Terraform: the session's workspaces, step directories and worker-sent mail live in temporary
# directories (the worker processes inherit these), state and plans in the local endpoint's
# S3 (tests/infra_tasks/terraform/conftest.py creates the bucket); cancels and lost workers
# resolve within seconds.
_tmp = os.path.join(tempfile.gettempdir(), f"opsqueue-session-{os.getpid()}")
os.environ.setdefault("TERRAFORM_ROOT", os.path.join(_tmp, "terraform"))
os.environ.setdefault("TERRAFORM_WORK_DIR", os.path.join(_tmp, "terraform-work"))
os.environ.setdefault("TERRAFORM_PLUGIN_CACHE_DIR", os.path.join(_tmp, "terraform-plugins"))
os.environ.setdefault("TERRAFORM_STATE_BUCKET", f"opsqueue-test-tfstate-{os.getpid()}")
os.environ.setdefault("TERRAFORM_CANCEL_GRACE_SECONDS", "5")
os.environ.setdefault("TERRAFORM_HEARTBEAT_SECONDS", "1")
os.environ.setdefault("TERRAFORM_LOST_AFTER_SECONDS", "10")
os.environ.setdefault("TERRAFORM_LOCK_TIMEOUT_SECONDS", "3")
# The test process itself uses Django's in-memory backend; workers write files to read back.
os.environ.setdefault("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
os.environ.setdefault("DJANGO_EMAIL_FILE_PATH", os.path.join(_tmp, "mail"))
