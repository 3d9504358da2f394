"""The retry-storm demo: real HTTP requests that show exactly-once behaviour under retries."""

from __future__ import annotations
