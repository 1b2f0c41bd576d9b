"""GET /metrics: Prometheus text built at scrape time from the manager and the job store.

A custom collector (not counters bumped in request handlers) because the truth lives
elsewhere: worker state in the one manager (possibly another process), jobs in the
job store (written by Celery workers too). Each app gets its own CollectorRegistry so several
apps in one process never clash on metric names.
"""
from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from app.errors import error_response
from app.supervisor.errors import SupervisorError
from app.supervisor.worker_slot import REASONS, STATES

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

REGISTRY_KEY = "scm.metrics_registry"
# Sheet jobs take seconds to minutes; the buckets span a calibration page to a 600-card run.
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class SupervisorCollector:
    """Worker, queue and broker figures from the manager's status()."""

    def __init__(self, app: Flask):
        self.app = app

    def describe(self):
        return []  # dynamic: nothing is collected at registration time

    def collect(self):
        from app.supervisor import manager_handle
        try:
            status = manager_handle(self.app).status()
        except SupervisorError as exc:
            log.warning("metrics: manager status unavailable: %s", exc)
            status = {}
        manager = status.get("manager") or {}
        yield _gauge("scm_manager_up", "1 when a Celery worker manager runs for this instance",
                     1 if manager.get("running") else 0)
        broker = status.get("broker") or {}
        yield _gauge("scm_broker_up", "1 when the broker answers", 1 if broker.get("reachable")
                     else 0)
        yield _gauge("scm_fallback_active", "1 while jobs run on the thread fallback",
                     1 if status.get("mode") == "threads" else 0)

        labels = ["worker", "queue"]
        up = GaugeMetricFamily("scm_worker_up", "1 when the worker process runs", labels=labels)
        state = GaugeMetricFamily("scm_worker_state", "1 for the worker's current state",
                                  labels=[*labels, "state"])
        restarts = CounterMetricFamily("scm_worker_restarts", "worker restarts by reason",
                                       labels=[*labels, "reason"])
        rss = GaugeMetricFamily("scm_worker_rss_bytes", "RSS of the worker's main process",
                                labels=labels)
        memory = GaugeMetricFamily("scm_worker_memory_bytes",
                                   "PSS of the worker's whole process tree (the memory limit's "
                                   "measure)", labels=labels)
        cpu = GaugeMetricFamily("scm_worker_cpu_percent", "CPU use of the worker's process tree",
                                labels=labels)
        responsive = GaugeMetricFamily("scm_worker_responsive", "1 when the worker answers ping",
                                       labels=labels)
        pool = GaugeMetricFamily("scm_worker_pool_size", "worker pool processes", labels=labels)
        for worker in status.get("workers") or []:
            key = [str(worker.get("name")), str(worker.get("queue"))]
            current = worker.get("state")
            up.add_metric(key, 1 if current in ("STARTING", "RUNNING") and worker.get("pid")
                          else 0)
            for name in STATES:
                state.add_metric([*key, name], 1 if current == name else 0)
            by_reason = worker.get("restarts_by_reason") or {}
            for reason in REASONS:
                restarts.add_metric([*key, reason], float(by_reason.get(reason) or 0))
            rss.add_metric(key, float(worker.get("rss_bytes") or 0))
            memory.add_metric(key, float(worker.get("memory_bytes") or 0))
            cpu.add_metric(key, float(worker.get("cpu_percent") or 0))
            responsive.add_metric(key, 1 if worker.get("responsive") else 0)
            pool.add_metric(key, float(worker.get("pool_size") or 0))
        yield from (up, state, restarts, rss, memory, cpu, responsive, pool)

        yield from _queue_depths(status, broker)


def _queue_depths(status: dict, broker: dict):
    """Depth per queue; a queue whose depth is null gets scm_queue_depth_unknown with why
    (the transport cannot count, e.g. SQS, or the broker did not answer)."""
    depth = GaugeMetricFamily("scm_queue_depth", "messages waiting in the queue",
                              labels=["queue"])
    unknown = GaugeMetricFamily(
        "scm_queue_depth_unknown", "1 for a queue whose depth the transport cannot tell",
        labels=["queue", "reason"])
    reason = broker.get("depth_unknown_reason") or "the broker did not answer"
    for name, count in (status.get("queues") or {}).items():
        if count is not None:
            depth.add_metric([name], float(count))
        else:
            unknown.add_metric([name, reason], 1)
    yield depth
    yield unknown


class JobsCollector:
    """Jobs by kind and status, and a duration histogram, from the job rows."""

    def __init__(self, app: Flask):
        self.database_url = app.config["SETTINGS"].database_url

    def describe(self):
        return []

    def collect(self):
        jobs = GaugeMetricFamily("scm_jobs", "jobs in the store by kind and status",
                                 labels=["kind", "status"])
        duration = HistogramMetricFamily(
            "scm_job_duration_seconds", "run time of finished jobs (started to finished)",
            labels=["kind", "status"])
        try:
            counts, histograms = self._query()
        except Exception as exc:  # a locked or missing table must not fail the scrape
            log.warning("metrics: job store unavailable: %s", exc)
            counts, histograms = {}, {}
        for (kind, status), n in sorted(counts.items()):
            jobs.add_metric([kind, status], float(n))
        for (kind, status), (buckets, total) in sorted(histograms.items()):
            duration.add_metric([kind, status], buckets=buckets, sum_value=total)
        yield jobs
        yield duration

    def _query(self):
        from app.jobs.store import store_for

        store = store_for(self.database_url)
        histograms = {}
        for key, (cumulative, n, total) in store.duration_histogram(DURATION_BUCKETS).items():
            buckets = [(floatToGoString(bound), float(count))
                       for bound, count in zip(DURATION_BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", float(n)))
            histograms[key] = (buckets, total)
        return store.counts(), histograms


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def registry(app: Flask) -> CollectorRegistry:
    return app.extensions[REGISTRY_KEY]


def metrics_disabled(settings) -> bool:
    """Production serves metrics only with METRICS_TOKEN: worker names, queue depths and
    job counts are reconnaissance for an attacker."""
    return settings.APP_ENV == "production" and not settings.METRICS_TOKEN


@bp.get("/metrics")
def metrics():
    settings = current_app.config["SETTINGS"]
    if metrics_disabled(settings):
        return error_response(404, "metrics_disabled",
                              "metrics are off in production until METRICS_TOKEN is set")
    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(401, "authorization_required", "metrics need the bearer token",
                                  {"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(generate_latest(registry(current_app)), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SupervisorCollector(app))
    reg.register(JobsCollector(app))
    ProcessCollector(registry=reg)  # this HTTP process's own CPU, memory and fds
    app.extensions[REGISTRY_KEY] = reg
    app.register_blueprint(bp)
    if metrics_disabled(app.config["SETTINGS"]):
        log.info("/metrics is off: APP_ENV=production and no METRICS_TOKEN")
