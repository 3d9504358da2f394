"""The built sdist and wheel carry the whole app, pass ``twine check``, and install into a new venv."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytest.importorskip("build", reason="needs the 'release' dependency group (build, twine)")
pytest.importorskip("twine", reason="needs the 'release' dependency group (build, twine)")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_idempotency"


def package_files():
    """Every file of the package in the source tree, as paths relative to the repository."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def run(*command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """Build the sdist, then the wheel from that sdist, as ``python -m build`` does by default."""
    out = tmp_path_factory.mktemp("dist")
    # With the backend installed here, build offline; otherwise build fetches it from the index.
    offline = ["--no-isolation"] if importlib.util.find_spec("hatchling") else []
    run(sys.executable, "-m", "build", *offline, "--outdir", str(out), str(ROOT))
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_wheel_holds_the_package_and_nothing_else(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert package_files() <= names
    for required in (
        "django_idempotency/py.typed",
        "django_idempotency/migrations/0001_initial.py",
        "django_idempotency/management/commands/purge_idempotency_keys.py",
        "django_idempotency/openapi.py",
        "django_idempotency/testing/__init__.py",
    ):
        assert required in names
    assert any(name.startswith("django_idempotency/templates/") for name in names)
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"django_idempotency", wheel.name.split("-py3")[0] + ".dist-info"}


def test_wheel_metadata(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata).decode())
    requires = message.get_all("Requires-Dist")
    assert any(r.startswith("django") and "djangorestframework" not in r for r in requires)
    assert any(r.startswith("djangorestframework") for r in requires)
    assert any(r.startswith("drf-spectacular") and "extra == 'openapi'" in r for r in requires)
    assert "openapi" in message.get_all("Provides-Extra")
    assert "Typing :: Typed" in message.get_all("Classifier")
    assert message["Description-Content-Type"] == "text/markdown"


def test_sdist_holds_the_package_tests_and_docs(dist):
    sdist, _ = dist
    with tarfile.open(sdist) as archive:
        prefix = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(prefix + "/") for name in archive.getnames()}
    assert package_files() <= names
    for required in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "tests/settings.py",
        "docs/index.md",
    ):
        assert required in names


def test_twine_check(dist):
    done = run(sys.executable, "-m", "twine", "check", "--strict", *map(str, dist))
    assert done.stdout.count("PASSED") == 2


INSTALLED_SCRIPT = """
import importlib.metadata
import io
import json
import importlib.resources
import sqlite3
import sys

import django
from django.conf import settings
from django.core.management import call_command

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_idempotency"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    USE_TZ=True,
)
django.setup()

import django_idempotency
from django_idempotency import IdempotentMixin, idempotent
from django_idempotency.models import IdempotencyKey
import django_idempotency.openapi
import django_idempotency.testing

package = importlib.resources.files("django_idempotency")
assert (package / "py.typed").is_file()
migrations = sorted(p.name for p in (package / "migrations").iterdir() if p.name[0].isdigit())
assert migrations[0] == "0001_initial.py", migrations
quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
call_command("check", **quiet)
call_command("migrate", verbosity=0, **quiet)
call_command("makemigrations", "django_idempotency", check=True, dry_run=True, **quiet)
call_command("purge_idempotency_keys", verbosity=0, **quiet)
tables = {row[0] for row in sqlite3.connect(sys.argv[1]).execute("select name from sqlite_master")}
assert IdempotencyKey._meta.db_table in tables
version = importlib.metadata.version("django-idempotency")
print(json.dumps({"location": django_idempotency.__file__, "version": version}))
"""


def test_wheel_installs_into_a_new_venv(dist, tmp_path):
    _, wheel = dist
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # The wheel goes in with this environment's pip, without its dependencies; Django, DRF and
    # drf-spectacular come from this environment through a .pth, so the test needs no network.
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--no-index",
        "--disable-pip-version-check",
        str(wheel),
    )
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    new_site = Path(purelib.stdout.strip())
    (new_site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = tmp_path / "check_install.py"
    script.write_text(textwrap.dedent(INSTALLED_SCRIPT))
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "DJANGO_", "VIRTUAL_ENV"))
    }
    done = run(str(python), "-I", str(script), str(tmp_path / "db.sqlite3"), cwd=tmp_path, env=env)
    installed = json.loads(done.stdout.strip().splitlines()[-1])
    # Imported from the new environment, not from the source checkout.
    assert Path(installed["location"]).is_relative_to(new_site), installed
    assert wheel.name.startswith(f"django_idempotency-{installed['version']}-")
