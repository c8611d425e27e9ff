"""Infrastructure jobs, one Django app each: terraform runs, managed RDS databases,
release migrations. Tasks under infra_tasks.* run on the `infra` queue, except
infra_tasks.releases.* on `release` (workers/queues.py)."""
