"""The example project's settings as ``bench/overhead.py`` serves them: production-like debug off.

With ``DEBUG`` on, Django keeps every SQL statement in memory per request, which would be measured
instead of the app. One route is added (see ``overhead_urls``); everything else is the example's.
"""

from __future__ import annotations

from example.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "overhead_urls"
