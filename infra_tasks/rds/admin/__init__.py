"""Admin for managed databases: registration with its schedule, and the four actions.

- `forms`: the database form with its schedule, and the keep-running form;
- `databases`: the managed databases and their actions (each one a job);
- `records`: the action records and divergences, read-only, linking their jobs.

Saving goes through `managed_database_save`, which keeps the beat schedules in step. Every
action is a job (`database_action_request`); the action records and divergences are
read-only and link to their job's page and log.
"""

from infra_tasks.rds.admin import databases, records

__all__ = ["databases", "records"]
