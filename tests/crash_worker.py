"""A worker process for ``test_crash.py``: send one idempotent POST, then wait to be killed.

Usage: ``python -m tests.crash_worker URL KEY JSON_BODY``, with ``DATABASE_URL`` pointing at the
parent's test database. The view it calls writes a row and sleeps inside the claim transaction;
the parent SIGKILLs this process while that transaction is open.
"""

from __future__ import annotations

import json
import os
import sys


def main(url: str, key: str, body: str) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from tests.helpers import SignedInClient

    response = SignedInClient().post(url, json.loads(body), format="json", HTTP_IDEMPOTENCY_KEY=key)
    print(response.status_code, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
