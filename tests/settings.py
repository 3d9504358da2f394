"""Settings for the test suite; ``DATABASE_URL`` picks SQLite (default), PostgreSQL or MariaDB."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

try:
    import MySQLdb  # noqa: F401
except ImportError:
    # PyMySQL is pure Python, so the MariaDB suite needs no compiler or client headers.
    import pymysql

    pymysql.install_as_MySQLdb()

SECRET_KEY = "django-idempotency-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.testapp.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASE_URL = os.environ.get("DATABASE_URL") or "sqlite://:memory:"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
_vendor = DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
if _vendor == "sqlite3":
    # A file, not shared-cache memory: threads then meet SQLite's real database lock.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"django_idempotency_test_{os.getpid()}.sqlite3")
    }
    DATABASES["default"]["OPTIONS"] = {"timeout": 2}
elif _vendor == "mysql":
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
    # No TEST CHARSET or COLLATION: the test database gets the server's defaults, as users'
    # databases do (utf8mb4_general_ci on MariaDB, which folds case, accents and spaces).

# A second alias, for routing the key records away from the default database.
DATABASES["other"] = {**DATABASES["default"], "TEST": dict(DATABASES["default"].get("TEST", {}))}
if _vendor == "sqlite3":
    DATABASES["other"]["TEST"]["NAME"] = DATABASES["default"]["TEST"]["NAME"].replace(
        ".sqlite3", "_other.sqlite3"
    )
else:
    DATABASES["other"]["TEST"]["NAME"] = f"test_{DATABASES['default']['NAME']}_other"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_idempotency",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"

# Redis, when the test runner found it (REDIS_URL); tests marked ``redis`` skip without it.
REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    CACHES["redis"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        # One prefix per test process, so concurrent runs on one Redis never meet.
        "KEY_PREFIX": f"idem-test-{os.getpid()}",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 2},
    }
    # Django's own Redis backend, which the cache store supports beside django-redis.
    CACHES["redis-builtin"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"idem-test-builtin-{os.getpid()}",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
