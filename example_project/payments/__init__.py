"""A tiny payments API: charges through a ViewSet, refunds through a function view."""

from __future__ import annotations
