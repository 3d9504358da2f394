"""The test matrix: Python x Django, on SQLite (or the database ``DATABASE_URL`` names), and lint.

nox -s tests                                   # every combination whose interpreter is found
nox -s "tests(python='3.12', django='6.0')"    # one combination
DATABASE_URL=postgres://postgres@127.0.0.1:5432/idem nox -s tests
nox -s lint
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

#: (Python, Django) pairs; Django 6.x needs Python 3.12 or newer.
MATRIX = [
    ("3.11", "5.2"),
    ("3.12", "6.0"),
    ("3.12", "6.1"),
    ("3.13", "6.0"),
    ("3.13", "6.1"),
]

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = False


def _add_pyenv_interpreters() -> None:
    """Put pyenv's installed interpreters on PATH, so ``python3.12`` is found without a shim."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    wanted = {python for python, _ in MATRIX} | {"3.11"}
    found: list[str] = []
    for minor in sorted(wanted):
        candidates = sorted(
            versions.glob(f"{minor}.*/bin"),
            key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()],
        )
        if candidates:
            found.append(str(candidates[-1]))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_interpreters()


def groups(*names: str) -> list[str]:
    """Return the requirements of pyproject.toml's dependency groups ``names``."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


@nox.session
@nox.parametrize(
    ("python", "django"),
    MATRIX,
    ids=[f"py{python}-django{django}" for python, django in MATRIX],
)
def tests(session: nox.Session, django: str) -> None:
    """Install the package with the test, release and DjangoXY groups; run the test suite."""
    session.install(".", *groups("test", "release", f"django{django.replace('.', '')}"))
    session.run("python", "-c", "import django; print('Django', django.get_version())")
    session.run(
        "python",
        "-W",
        "error::DeprecationWarning",
        "-m",
        "pytest",
        *(session.posargs or ["-q", "-p", "no:randomly", "-m", "not browser"]),
        env={"PYTHONDEVMODE": "1"},
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Run ruff, ruff format and mypy --strict."""
    session.install(".", *groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
