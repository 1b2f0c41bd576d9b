"""Dockerfile, .dockerignore and docker-compose.yml: parsed, validated, and checked
against the project (no container engine runs here, so nothing is built)."""
from __future__ import annotations

import fnmatch
import importlib.resources
import json
import tomllib

import dockerfile
import jsonschema
import pytest
import yaml

from tests.deploy.project_facts import DEPLOY, ROOT, env_file_names, settings_names, unknown_variables

IMAGE_PROJECT = "/opt/silhouette-card-maker/"   # where the image keeps deploy/ files
INSTANCE = "/var/lib/silhouette-card-maker"     # the image's (and the units') INSTANCE_PATH


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def instructions() -> list:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def console_scripts() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


# --- compose ------------------------------------------------------------------------------
def test_compose_matches_the_compose_specification(compose):
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_broken_file(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["app"]["healthcheck"]["interval"] = ["15s"]
    broken["services"]["redis"]["restart_policy"] = "always"
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


def test_the_services_operators_expect(compose):
    assert set(compose["services"]) == {"redis", "app", "worker", "flower", "nginx", "postgres"}
    assert compose["services"]["postgres"]["profiles"] == ["postgres"]
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][
        redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    # Scalable: no fixed container name, no host port on the worker.
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == ["silhouette-card-maker", "--no-web"]


def test_every_service_has_a_health_check_and_waits_for_health(compose):
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in compose["services"], (name, dependency)
            assert condition["condition"] == "service_healthy", (name, dependency)


def test_secrets_only_from_env_files(compose):
    secret_names = {"JWT_SECRET_KEY", "ADMIN_PASSWORD", "METRICS_TOKEN", "REDIS_PASSWORD",
                    "FLOWER_BASIC_AUTH", "POSTGRES_PASSWORD", "DATABASE_URL"}
    for name, service in compose["services"].items():
        assert not secret_names & set(service.get("environment", {})), name
    text = (ROOT / "docker-compose.yml").read_text()
    assert "password@" not in text.lower()
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for service in compose["services"].values():
        env_file = service.get("env_file")
        if env_file:
            path = ROOT / env_file
            assert (path.parent / (path.name + ".example")).exists(), env_file
            assert "/" + env_file.removeprefix("./") in ignored, env_file


def test_compose_names_only_real_variables_paths_and_commands(compose):
    scripts = console_scripts()
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("${SCM_IMAGE"):
            assert not unknown_variables(set(service.get("environment", {}))), name
            command = service["command"]
            assert command[0] in scripts | {"celery"}, command
            if command[0] == "silhouette-card-maker":
                import start_with_celery  # the script's own parser accepts the arguments
                start_with_celery.parse_args(command[1:])
            if command[0] == "celery":
                assert command[1:3] == ["-A", "celery_app"] and (ROOT / "celery_app.py").exists()
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), volume
        test = service["healthcheck"]["test"]
        for word in test[1:]:
            if word.startswith(IMAGE_PROJECT):
                assert (ROOT / word.removeprefix(IMAGE_PROJECT)).exists(), word
    for example in ("compose.env.example", "postgres.env.example"):
        assert not unknown_variables(env_file_names(DEPLOY / example)), example


def test_app_and_worker_keep_the_instance_folder_apart(compose):
    services = compose["services"]
    # One manager per instance folder: the app's is a named volume, each worker replica
    # keeps the image's anonymous one (a shared one would let only one manager run).
    assert f"instance:{INSTANCE}" in services["app"]["volumes"]
    assert not any(v.endswith(f":{INSTANCE}") for v in services["worker"].get("volumes", []))
    storage = services["app"]["environment"]["STORAGE_DIR"]
    assert f"storage:{storage}" in services["app"]["volumes"]
    assert f"storage:{storage}" in services["worker"]["volumes"]
    assert services["worker"]["environment"]["STORAGE_DIR"] == storage
    assert services["app"]["environment"]["TRUSTED_PROXIES"] == "1"


# --- Dockerfile ---------------------------------------------------------------------------
def test_dockerfile_parses_into_two_stages_on_python_311_slim(instructions):
    froms = [i.value[0] for i in instructions if i.cmd == "FROM"]
    assert froms == ["python:3.11-slim", "python:3.11-slim"]


def test_dockerfile_runs_as_a_non_root_user_with_volume_and_health(instructions):
    final = instructions[max(i for i, x in enumerate(instructions) if x.cmd == "FROM"):]
    users = [i.value[0] for i in final if i.cmd == "USER"]
    assert users and users[-1] not in ("root", "0")
    volumes = [v for i in final if i.cmd == "VOLUME" for v in i.value]
    assert INSTANCE in volumes
    env = dict(zip(*[iter(v for i in final if i.cmd == "ENV" for v in i.value)] * 2, strict=False))
    assert env["INSTANCE_PATH"] == INSTANCE
    assert not unknown_variables(set(env)), set(env)
    health = [i for i in final if i.cmd == "HEALTHCHECK"]
    assert len(health) == 1 and "healthcheck.py" in " ".join(health[0].value)
    cmd = [i for i in final if i.cmd == "CMD"][-1].value
    assert cmd[0] in console_scripts()


def test_dockerfile_copies_only_existing_files_the_context_keeps(instructions):
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for instruction in instructions:
        if instruction.cmd != "COPY" or any(f.startswith("--from") for f in instruction.flags):
            continue
        for source in instruction.value[:-1]:
            assert (ROOT / source).exists(), source
            assert in_context(source, patterns), f"{source} is excluded by .dockerignore"
    assert not in_context("instance/app.sqlite3", patterns)
    assert not in_context(".git/config", patterns)


def in_context(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent) decides."""
    keep = True
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
               for p in prefixes):
            keep = negate
    return keep


def test_healthcheck_default_url_is_the_probe():
    text = (DEPLOY / "healthcheck.py").read_text()
    assert "/api/celery/health" in text and "PORT" in settings_names()
