"""Settings of the example project: a development setup, never fit for production.

``DATABASE_URL`` picks the database (e.g. ``postgres://user:pass@localhost/demo`` or
``mysql://user:pass@localhost/demo``); without it the project uses SQLite in ``db.sqlite3``.
``REDIS_URL`` (e.g. ``redis://localhost:6379/0``) makes Redis the cache and the key store of the
lease-mode payouts endpoint. ``PROVIDER_*`` variables tune the fake payment provider.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_float(name: str, default: float) -> float:
    """Return the environment variable ``name`` as a number, ``default`` when it is unset."""
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(
            f"The environment variable {name} is {value!r}; set it to a number, e.g. {default}."
        ) from None


SECRET_KEY = os.environ.get("SECRET_KEY", "django-idempotency-example-not-a-secret")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_idempotency",
    "payments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

SQLITE_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASE_URL = os.environ.get("DATABASE_URL", "")

try:
    import dj_database_url
except ImportError:  # without dj-database-url only the SQLite default is available
    dj_database_url = None

if dj_database_url is not None:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL or SQLITE_URL)}
elif DATABASE_URL:
    raise ImproperlyConfigured(
        f"DATABASE_URL is set to {DATABASE_URL!r}, but dj-database-url is not installed; "
        "install the 'example' dependency group, or unset DATABASE_URL to use SQLite."
    )
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
    }

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite has one writer at a time. IMMEDIATE takes the write lock when a transaction begins,
    # so concurrent requests queue (up to ``timeout`` seconds) instead of failing on lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 10}
    )

if DATABASES["default"]["ENGINE"].endswith("mysql"):
    try:
        import MySQLdb  # noqa: F401
    except ImportError:  # PyMySQL is a pure-Python stand-in for mysqlclient
        import pymysql

        pymysql.install_as_MySQLdb()
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "idempotency-example",
        }
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The OpenAPI schema documents the Idempotency-Key header and problem responses per operation.
    "DEFAULT_SCHEMA_CLASS": "django_idempotency.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}


# Every IDEMPOTENCY_* setting keeps its default; the views set their options themselves.
# ATOMIC_REQUESTS stays off: the lease-mode payouts view must not run inside a transaction.

# The store of the lease-mode payouts endpoint: Redis when configured, else the database.
# (Atomic mode, used by charges, refunds and the webhook, keeps its keys in the database.)
PAYMENTS_IDEMPOTENCY_STORE = "cache" if REDIS_URL else "database"

# The fake payment provider (payments/provider.py): each call takes a random time up to
# MAX_DELAY seconds and fails with probability FAILURE_RATE. The seed makes the sequence of
# outcomes the same every time the server starts; "random" draws a fresh one.
PAYMENTS_PROVIDER = {
    "MAX_DELAY": env_float("PROVIDER_MAX_DELAY", 0.3),
    "FAILURE_RATE": env_float("PROVIDER_FAILURE_RATE", 0.2),
    "SEED": os.environ.get("PROVIDER_SEED", "demo"),
    # How long a payout asked to be slow (``"simulate": "slow"``) takes.
    "SLOW_DELAY": env_float("PROVIDER_SLOW_DELAY", 2.0),
}
# Payloads may carry "simulate" (slow provider, transient failure) only while this is on.
PAYMENTS_DEMO_CONTROLS = DEBUG

# The secret the provider's webhook deliveries carry in X-Webhook-Secret.
PAYMENTS_WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "example-webhook-secret")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_idempotency": {"handlers": ["console"], "level": "INFO"}},
}
