"""Settings for the servers the reliability suite starts: the test settings plus its own URLs.

The server process gets the parent's test database through ``DATABASE_URL`` and writes a small
report (its pid and database session) for the views that are told to wait to be killed.
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.reliability.urls"

REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    # The server's stderr is the test's evidence when something fails; events stay out of it.
    "loggers": {
        "django_idempotency": {"handlers": ["stderr"], "level": "WARNING"},
        "django.request": {"handlers": ["stderr"], "level": "ERROR"},
    },
}
