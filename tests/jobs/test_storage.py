"""STORAGE_DIR: the one path hosts share. A job run on one host is served and cleaned up
by another that has its own instance folder but the same storage and database."""
from __future__ import annotations

import time

import pytest
from flask_jwt_extended import create_access_token

from app import create_app
from app.auth.users import UserStore
from app.jobs import runner
from app.jobs.cleanup import cleanup_expired
from app.jobs.store import JobStore
from tests.conftest import make_settings
from tests.database import current_database_url, set_job_columns


def test_hosts_sharing_storage_and_database_agree_on_files(tmp_path):
    shared = tmp_path / "shared"
    url = current_database_url() or f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    host_a = make_settings(tmp_path / "a", STORAGE_DIR=shared, DATABASE_URL=url)
    host_b = make_settings(tmp_path / "b", STORAGE_DIR=shared, DATABASE_URL=url)
    store = JobStore(url)
    alice = UserStore(url).create("alice", "alice-password-1")
    job = store.create(owner=alice.id, kind="calibration", params={"paper_size": "letter"},
                       queue="default")

    assert runner.run_job(host_a, job.id, runner="threads@a/1", store=store)["status"] == \
        "succeeded"
    done = store.get(job.id)
    assert done.output_path == f"outputs/{job.id}.pdf"  # no host's own path in the record
    assert (shared / "outputs" / f"{job.id}.pdf").is_file()
    assert not (host_a.INSTANCE_PATH / "outputs").exists()  # nothing in the instance folder

    app_b = create_app(host_b)
    with app_b.app_context():
        token = create_access_token(identity=alice.id,
                                    additional_claims={"role": "user", "ver": alice.token_version})
    response = app_b.test_client().get(f"/api/jobs/{job.id}/result",
                                       headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.data.startswith(b"%PDF")

    set_job_columns(store, job.id, finished_at=time.time() - 2 * 24 * 3600)
    assert cleanup_expired(host_b, store)["outputs"] == 1
    assert not (shared / "outputs" / f"{job.id}.pdf").exists()
    assert store.get(job.id).output_path is None


def test_storage_defaults_to_the_instance_folder(tmp_path):
    settings = make_settings(tmp_path)
    assert settings.outputs_dir == settings.INSTANCE_PATH / "outputs"
    assert settings.uploads_dir == settings.INSTANCE_PATH / "uploads"
    assert settings.storage_relative(settings.outputs_dir / "x.pdf") == "outputs/x.pdf"
    # Records from before STORAGE_DIR held absolute paths; they still resolve.
    assert settings.in_storage("/elsewhere/x.pdf").as_posix() == "/elsewhere/x.pdf"


def test_unsupported_database_url_is_a_clear_configuration_error(tmp_path):
    from app.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="DATABASE_URL: .*postgresql\\+psycopg://"):
        load_settings(_env_file=None, INSTANCE_PATH=tmp_path, DATABASE_URL="mysql://db/x")
