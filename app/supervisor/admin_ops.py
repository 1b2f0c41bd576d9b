"""The manager's admin operations, listed once.

Each operation says its arguments (a pydantic model: the HTTP body and the manager
method's keyword arguments), its HTTP verb (None: socket only), how long a socket
client waits for it, whether it may be answered while the manager boots, and the keys
every answer has. The socket server's allow-list and the proxy's methods
(`app.supervisor.control`), the routes (`app.supervisor.api`) and the OpenAPI entries
(`admin_openapi_paths`) all derive from this table.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.queue_names import KNOWN_QUEUES, NODE_NAME_PATTERN, QueueName
from app.supervisor.logtail import DEFAULT_BYTES as LOG_DEFAULT_BYTES
from app.supervisor.logtail import MAX_BYTES as LOG_MAX_BYTES

MAX_CONCURRENCY = 64
MAX_STOP_TIMEOUT = 600

STATUS_KEYS = ("mode", "workers", "broker", "queues", "restarts_by_reason", "concurrency",
               "manager")
# Added by the HTTP route from the host registry (app.cluster): every host of the cluster.
CLUSTER_KEYS = ("node", "hosts", "reconciler")
# The public probe's body: nothing else (no hosts, pids, paths) leaves through it.
HEALTH_KEYS = ("healthy", "status", "mode", "uptime_seconds", "restart_count", "workers")


class AdminArgs(BaseModel):
    # Strict: "3" is not a concurrency and true is not a timeout.
    model_config = ConfigDict(extra="forbid", strict=True)


class NoArgs(AdminArgs):
    pass


class StartArgs(AdminArgs):
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] | None = None
    # Repeats weight a queue, as in CELERY_QUEUES.
    queues: Annotated[list[QueueName], Field(min_length=1, max_length=MAX_CONCURRENCY)] \
        | None = None


class StopArgs(AdminArgs):
    timeout: Annotated[float, Field(ge=0, le=MAX_STOP_TIMEOUT, allow_inf_nan=False)] = 30


class RestartArgs(AdminArgs):
    queue: QueueName | None = None


class OnHost(AdminArgs):
    """The HTTP body's `host`: the node name whose workers to act on (default: this host).
    Only the route reads it; the manager method never sees it."""
    host: Annotated[str, Field(pattern=NODE_NAME_PATTERN.pattern)] | None = None


class StartBody(StartArgs, OnHost):
    pass


class StopBody(StopArgs, OnHost):
    pass


class RestartBody(RestartArgs, OnHost):
    pass


class PurgeArgs(AdminArgs):
    queues: Annotated[list[QueueName], Field(min_length=1, max_length=len(KNOWN_QUEUES) * 4)]

    @field_validator("queues")
    @classmethod
    def _distinct(cls, queues: list[str]) -> list[str]:
        # In the caller's order: purging a queue twice would report 0 the second time.
        return list(dict.fromkeys(queues))


class QueueArgs(AdminArgs):
    queue: str


class LogTailArgs(AdminArgs):
    worker: Annotated[str, Field(min_length=1, max_length=200)]
    max_bytes: Annotated[int, Field(ge=1, le=LOG_MAX_BYTES)] = LOG_DEFAULT_BYTES


@dataclass(frozen=True)
class AdminOp:
    name: str
    summary: str
    args: type[AdminArgs] = NoArgs
    http: Literal["GET", "POST"] | None = "GET"
    body: type[AdminArgs] | None = None  # the HTTP body when it holds more than `args`
    answer_keys: tuple[str, ...] = ()
    answer_schema: str | None = None  # the OpenAPI component of the answer, if any
    reply_timeout_s: float = 60.0     # a socket client's wait (plus `timeout_arg`'s value)
    timeout_arg: str | None = None
    during_boot: bool = False         # answered from published state while booting
    public: bool = False              # no token needed

    @property
    def body_args(self) -> type[AdminArgs]:
        return self.body or self.args

    @property
    def body_required(self) -> bool:
        return any(field.is_required() for field in self.body_args.model_fields.values())

    def signature(self, *, method: bool = False) -> inspect.Signature:
        """The manager method's parameters: the argument model's fields, in order
        (after `self` for a method)."""
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter("self", kind)] if method else []
        params += [inspect.Parameter(name, kind, default=inspect.Parameter.empty
                                     if field.is_required() else field.default)
                   for name, field in self.args.model_fields.items()]
        return inspect.Signature(params)

    def call_kwargs(self, *args, **kwargs) -> dict:
        """A method call's arguments as keywords, defaults filled in."""
        bound = self.signature().bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def reply_timeout(self, kwargs: dict) -> float:
        if self.timeout_arg is None:
            return self.reply_timeout_s
        given = kwargs.get(self.timeout_arg)
        if given is None:
            given = self.args.model_fields[self.timeout_arg].default
        return float(given) + self.reply_timeout_s


class _StartsOp(TypedDict):
    """What start and restart share (typed, so `**_STARTS` is checked against AdminOp)."""
    http: Literal["POST"]
    answer_keys: tuple[str, ...]
    answer_schema: str
    reply_timeout_s: float


_STARTS: _StartsOp = {"http": "POST", "answer_keys": STATUS_KEYS, "answer_schema": "Status",
                      "reply_timeout_s": 180.0}
ADMIN_OPS: dict[str, AdminOp] = {op.name: op for op in (
    AdminOp("start", "Start workers (clears FAILED) of this host or the named `host`",
            StartArgs, body=StartBody, **_STARTS),
    AdminOp("stop", "Stop workers warm, then kill after `timeout` s (this host or `host`)",
            StopArgs, http="POST", body=StopBody, answer_keys=STATUS_KEYS,
            answer_schema="Status", timeout_arg="timeout"),
    AdminOp("restart", "Restart one queue's worker, or all (this host or `host`)",
            RestartArgs, body=RestartBody, **_STARTS),
    AdminOp("status", "Workers, mode, broker and queue depths; every host of the cluster",
            answer_keys=STATUS_KEYS,
            answer_schema="Status", during_boot=True),
    AdminOp("health", "Liveness of the Celery side, from cached state",
            answer_keys=HEALTH_KEYS, answer_schema="Health", reply_timeout_s=5.0,
            during_boot=True, public=True),
    AdminOp("tasks", "Active, reserved and scheduled tasks per worker",
            answer_keys=("workers",)),
    AdminOp("stats", "Celery worker statistics", answer_keys=("workers",)),
    AdminOp("purge", "Empty only the named queues", PurgeArgs, http="POST",
            answer_keys=("purged",), answer_schema="Purged"),
    AdminOp("log_tail", "The end of one worker's own log file (bounded, like supervisord's"
            " tail)", LogTailArgs, http="POST",
            answer_keys=("worker", "size", "offset", "truncated", "text"), reply_timeout_s=10.0),
    AdminOp("worker_available", "Whether a live worker consumes the queue", QueueArgs,
            http=None, reply_timeout_s=5.0, during_boot=True),
)}


# --------------------------------------------------------------------------- OpenAPI

def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict:
    return {"description": description,
            "content": _json({"$ref": "#/components/schemas/Error"})}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


ADMIN_ERRORS = {"401": _error("missing, invalid, tampered or expired token"),
                "422": _error("token claims could not be verified"),
                "403": _error("the caller is not an admin")}
MANAGER_ERRORS = {"503": _error("no manager runs, or the broker did not answer")}


def _operation(op: AdminOp, body_schema: Callable[[type], dict]) -> dict:
    answer = _ref(op.answer_schema) if op.answer_schema else \
        {"type": "object", "required": list(op.answer_keys)}
    if op.public:  # the probe: 503 means unhealthy, with the same body
        return {"tags": ["public"], "summary": op.summary, "security": [],
                "responses": {"200": {"description": "healthy or degraded",
                                      "content": _json(answer)},
                              "503": {"description": "unhealthy", "content": _json(answer)}}}
    responses = {"200": {"description": op.summary, "content": _json(answer)},
                 **ADMIN_ERRORS, **MANAGER_ERRORS}
    entry = {"tags": ["admin"], "summary": op.summary, "security": [{"bearerAuth": []}],
             "responses": responses}
    if op.http == "POST":
        entry["requestBody"] = {"required": op.body_required,
                                "content": _json(body_schema(op.body_args))}
        responses.update({"400": _error("invalid body"), "413": _error("body too large")})
    return entry


def admin_openapi_paths(body_schema: Callable[[type], dict]) -> dict:
    """The `/api/celery/*` entries of the OpenAPI document. `body_schema` turns an
    argument model into the document's schema dialect (app.openapi's job)."""
    return {f"/api/celery/{op.name}": {op.http.lower(): _operation(op, body_schema)}
            for op in ADMIN_OPS.values() if op.http is not None}
