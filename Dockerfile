# syntax=docker/dockerfile:1
# One image for every role (see docker-compose.yml):
#   web + its own manager and workers   silhouette-card-maker            (default)
#   worker-only host                     silhouette-card-maker --no-web
#   Flower                               celery -A celery_app flower
# Settings come from the environment (README "Operator guide"); secrets from an env file.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN /opt/venv/bin/pip install -r requirements.txt
COPY pyproject.toml README.md gunicorn.conf.py celery_app.py celery_worker.py start_with_celery.py ./
COPY app ./app
RUN /opt/venv/bin/pip install ".[postgres,flower]"

FROM python:3.11-slim
ARG SCM_UID=10001
RUN groupadd --system --gid "${SCM_UID}" scm \
 && useradd --system --uid "${SCM_UID}" --gid scm --no-create-home \
        --home-dir /var/lib/silhouette-card-maker --shell /usr/sbin/nologin scm \
 && install -d -o scm -g scm -m 0700 /var/lib/silhouette-card-maker /srv/silhouette-card-maker
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/silhouette-card-maker/deploy/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCM_ENV_FILE= \
    INSTANCE_PATH=/var/lib/silhouette-card-maker \
    STORAGE_DIR=/srv/silhouette-card-maker \
    HOST=0.0.0.0 \
    PORT=5000
USER scm
WORKDIR /var/lib/silhouette-card-maker
# The instance folder (SQLite database, logs, sockets, lock: this host's own) and
# STORAGE_DIR (uploads and outputs: the one folder hosts share).
VOLUME ["/var/lib/silhouette-card-maker", "/srv/silhouette-card-maker"]
EXPOSE 5000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/silhouette-card-maker/deploy/healthcheck.py", "http"]
CMD ["silhouette-card-maker"]
