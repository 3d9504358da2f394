"""The example project's settings, URLs and WSGI entry point."""

from __future__ import annotations
