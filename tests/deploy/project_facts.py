"""What the project really has, for checking the deployment files against it."""
from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))

# Read by other programs, not by Settings: Python itself, Flower, the official images,
# and the settings loader's own SCM_ENV_FILE.
EXTERNAL_VARIABLES = {
    "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH", "HOME", "SCM_ENV_FILE",
    "FLOWER_BASIC_AUTH", "FLOWER_ADDRESS", "FLOWER_PORT", "FLOWER_UNAUTHENTICATED_API",
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",
    "SCM_HTTP_PORT", "SCM_FLOWER_PORT", "SCM_IMAGE", "SCM_ENV",  # compose interpolation only
}
# Named by the files ahead of the work that adds them to Settings. Once a name lands
# there it must leave this set (the test says so).
PENDING_SETTINGS: set[str] = set()


def settings_names() -> set[str]:
    return set(Settings.model_fields)


def unknown_variables(names: set[str]) -> set[str]:
    return names - settings_names() - EXTERNAL_VARIABLES - PENDING_SETTINGS


def env_file_names(path: Path) -> set[str]:
    """Variable names assigned in a dotenv-style file (commented examples included)."""
    names = set()
    for line in path.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def unit_values(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in path.read_text().splitlines()
            if line.startswith(f"{key}=")]
