"""Jobs: records (store), where they run (dispatch, fallback), how they run (runner),
what brings lost ones back (reconciler), and the HTTP API (api).

Wiring lives in the composition root, `app.runtime`; the blueprint in `app.jobs.api`
(not imported here: Celery workers import this package without Flask).
"""
from app.jobs.job_services import JobServices, services

__all__ = ["JobServices", "services"]
