"""Settings of ``bench/cost.py``: ``overhead.py``'s (the example's, debug off, persistent
connections) plus the bench-only ``costapp``, the cost views' URLs and Redis for the cache store.

``DATABASE_URL`` picks PostgreSQL or MariaDB (the example's settings read it); ``REDIS_URL`` names
the Redis server of ``store="cache"``.
"""

from __future__ import annotations

import os

from overhead_settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "costapp"]  # noqa: F405
ROOT_URLCONF = "cost_urls"

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": "idem-cost",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 2},
    },
}
IDEMPOTENCY_CACHE_ALIAS = "redis"

# A failing request shows its traceback in the worker's log, which the benchmark prints.
LOGGING = {  # noqa: F405
    **LOGGING,  # noqa: F405
    "loggers": {
        **LOGGING["loggers"],  # noqa: F405
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
