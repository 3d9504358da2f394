from __future__ import annotations

import subprocess
import sys


def test_the_package_imports_without_django_configured():
    code = "import django_idempotency, sys; assert 'django' not in sys.modules; print(django_idempotency.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_public_names():
    import django_idempotency
    from django_idempotency.decorators import idempotent
    from django_idempotency.mixins import IdempotentMixin

    assert django_idempotency.idempotent is idempotent
    assert django_idempotency.IdempotentMixin is IdempotentMixin
    try:
        django_idempotency.nothing  # noqa: B018
    except AttributeError as exc:
        assert "nothing" in str(exc)
    else:
        raise AssertionError("unknown names must raise AttributeError")
