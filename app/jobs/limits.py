"""The limits a job runs under, from the settings: its memory budget (checked at upload
and in the worker, app.cards.budget) and the words a job fails with when it broke a
worker's memory or time limit anyway.

Every figure is derived the same way in the web process, in a Celery worker and in a
fallback child, from the same settings, so an upload accepted here is not refused there
(unless the operator changed the settings in between; then the worker says why).
"""
from __future__ import annotations

from app.cards.budget import MB, MemoryBudget
from app.queue_names import split_concurrency
from app.settings import Settings

SHEETS_QUEUE = "pdf_generation"
# Measured (VmRSS / PSS with the card engine, pypdf, numpy and Pillow imported): what a
# Celery worker's main process and each pool child hold before a job decodes anything.
WORKER_MAIN_MB = 80
POOL_CHILD_MB = 100
# A fallback child's address space before decoding (VmSize with the same imports,
# ~230 MB, plus thread stacks and two malloc arenas): RLIMIT_AS counts reservations.
FALLBACK_CHILD_VIRTUAL_MB = 320
MIN_BUDGET_MB = 16


def sheets_pool_size(settings: Settings) -> int:
    """How many jobs the pdf_generation worker runs at once (its pool size): in a worker,
    the size the supervisor started it with; elsewhere, the configured split."""
    if settings.CELERY_POOL_SIZE:
        return settings.CELERY_POOL_SIZE
    sizes = split_concurrency(settings.CELERY_CONCURRENCY, settings.queue_weights)
    return sizes.get(SHEETS_QUEUE, 1)


def job_budget(settings: Settings) -> MemoryBudget:
    """The decode budget of one sheets job on a Celery worker (and so at upload)."""
    if settings.JOB_MEMORY_MB:
        return MemoryBudget(settings.JOB_MEMORY_MB * MB, "JOB_MEMORY_MB")
    pool = sheets_pool_size(settings)
    share = (settings.CELERY_MAX_MEMORY_MB - WORKER_MAIN_MB) // pool - POOL_CHILD_MB
    return MemoryBudget(max(MIN_BUDGET_MB, share) * MB,
                        f"CELERY_MAX_MEMORY_MB={settings.CELERY_MAX_MEMORY_MB} per "
                        f"{SHEETS_QUEUE} worker running {pool} job(s) at once")


def fallback_budget(settings: Settings) -> MemoryBudget:
    """The decode budget of a job in a fallback child (its address-space limit less what
    the child itself reserves)."""
    limit = settings.fallback_memory_mb
    share = max(MIN_BUDGET_MB, limit - FALLBACK_CHILD_VIRTUAL_MB)
    if settings.JOB_MEMORY_MB:
        share = min(share, settings.JOB_MEMORY_MB)
    return MemoryBudget(share * MB, f"a fallback process may use {limit} MB")


def memory_overrun(limit_mb: int, where: str = "a worker") -> str:
    """Why a job that drove its process over the memory limit failed (no retry: it
    would only do the same to the next one)."""
    return f"this job needed more memory than {where} may use (limit {limit_mb} MB)"


def time_overrun(limit_seconds: float, where: str = "a worker") -> str:
    return f"this job needed more time than {where} may use (time limit {limit_seconds:.0f} s)"
