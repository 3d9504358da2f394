"""Settings for ``bench/store_latency.py``: PostgreSQL, Redis, and the bench's own few views."""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = "django-idempotency-store-latency"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.store_urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/idem_bench_store")
    )
}
# The bench uses this database as it is (created and migrated if missing), never a test copy.
DATABASES["default"]["TEST"] = {"NAME": DATABASES["default"]["NAME"]}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": f"idem-bench-store-{os.getpid()}",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 2},
    },
}

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_idempotency",
    "tests.testapp",
]
MIDDLEWARE: list[str] = []

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

IDEMPOTENCY_CACHE_ALIAS = "redis"
IDEMPOTENCY_CACHE_KEY_PREFIX = "bench"
