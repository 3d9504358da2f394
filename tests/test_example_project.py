"""The example project stays runnable: it passes Django's checks and migrates a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


@pytest.mark.parametrize(
    "command",
    [
        ["check", "--fail-level", "WARNING"],
        ["makemigrations", "--check", "--dry-run"],
        ["migrate", "--noinput"],
    ],
    ids=["check", "migrations-current", "migrate"],
)
def test_manage_py(tmp_path, command):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'example.sqlite3'}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
