"""A Celery app that cannot be imported: a worker loading it exits at start, every time."""
from __future__ import annotations

import scm_module_that_does_not_exist  # noqa: F401  (the point of this file)
