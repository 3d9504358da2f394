"""The example project's settings as ``bench/overhead.py`` serves them: production-like debug off.

With ``DEBUG`` on, Django keeps every SQL statement in memory per request, which would be measured
instead of the app. One route is added (see ``overhead_urls``); everything else is the example's.
"""

from __future__ import annotations

from example.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "overhead_urls"

# Persistent connections, as production runs: a new PostgreSQL connection per request (Django's
# default, CONN_MAX_AGE = 0) costs more than everything measured here and hides it.
DATABASES["default"]["CONN_MAX_AGE"] = 600  # noqa: F405
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
