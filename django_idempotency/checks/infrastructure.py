"""System checks of the infrastructure the guarantee depends on: the database, the cache, Redis."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage
from django.db import connections, router
from django.utils.module_loading import import_string

from django_idempotency import conf as conf_module
from django_idempotency.checks.catalogue import message
from django_idempotency.checks.values import raw

UNSHARED_CACHES = ("locmem.LocMemCache", "filebased.FileBasedCache")
DJANGO_REDIS = "django_redis.cache.RedisCache"
BUILTIN_REDIS = "django.core.cache.backends.redis.RedisCache"


def check_database(**kwargs: Any) -> list[CheckMessage]:
    """Return warnings about the database that key records are written to."""
    if raw("STORE") == conf_module.STORE_CACHE:
        return []
    from django_idempotency.models import IdempotencyKey

    alias = router.db_for_write(IdempotencyKey)
    issues: list[CheckMessage] = []
    if not settings.DEBUG and not connections[alias].features.has_select_for_update:
        issues.append(message("W002", obj=IdempotencyKey, alias=alias))
    if raw("MODE") == conf_module.MODE_LEASE and connections[alias].settings_dict.get(
        "ATOMIC_REQUESTS"
    ):
        issues.append(message("W005", obj=IdempotencyKey, alias=alias))
    return issues


def check_identity(
    *, databases: Collection[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Return an error when the key table compares ``scope`` or ``key`` case-, accent- or space-insensitively.

    It queries the database, so like Django's database checks it runs only with
    ``manage.py check --database <alias>`` (and during ``migrate``), for those aliases.
    """
    if not databases or raw("STORE") == conf_module.STORE_CACHE:
        return []
    from django.db import DatabaseError

    from django_idempotency.identity import inexact_columns
    from django_idempotency.models import IdempotencyKey

    alias = router.db_for_write(IdempotencyKey)
    if alias not in databases:
        return []
    table = IdempotencyKey._meta.db_table
    try:
        if table not in connections[alias].introspection.table_names():
            return []  # not migrated yet: migration 0003 creates the columns exact
        folding = inexact_columns(connections[alias], table, ("scope", "key"))
    except DatabaseError:
        return []  # Django's own database checks report a database it cannot reach
    if not folding:
        return []
    return [message("E016", obj=IdempotencyKey, alias=alias, columns=" and ".join(folding))]


def is_redis_backend(backend: str) -> bool:
    """Return whether the cache ``BACKEND`` path names a Redis cache the cache store can use.

    That is Django's own ``RedisCache`` or django-redis', or a subclass of either.
    """
    try:
        found = import_string(backend)
    except ImportError:
        return False
    for supported in (BUILTIN_REDIS, DJANGO_REDIS):
        try:
            if issubclass(found, import_string(supported)):
                return True
        except ImportError:  # django-redis is optional
            continue
    return False


def check_cache(**kwargs: Any) -> list[CheckMessage]:
    """Return errors about the cache the cache store uses, when ``IDEMPOTENCY_STORE`` is cache."""
    if raw("STORE") != conf_module.STORE_CACHE:
        return []
    alias = raw("CACHE_ALIAS")
    config = settings.CACHES.get(alias)
    if config is None:
        return [message("E012", value=alias)]
    backend = str(config.get("BACKEND", ""))
    if backend.endswith("dummy.DummyCache"):
        return [message("E013", alias=alias)]
    if backend.endswith(UNSHARED_CACHES):
        return [message("E014", alias=alias, backend=backend)]
    if not is_redis_backend(backend):
        return [message("E015", alias=alias, backend=backend)]
    return []


def check_redis_eviction(
    *, databases: Collection[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Return a warning when Redis may evict the cache store's records.

    It connects to Redis, so like Django's database checks it runs only when asked for with
    ``manage.py check --database <alias>`` (and during ``migrate``).
    """
    if not databases or raw("STORE") != conf_module.STORE_CACHE:
        return []
    alias = raw("CACHE_ALIAS")
    config = settings.CACHES.get(alias)
    if config is None or not is_redis_backend(str(config.get("BACKEND", ""))):
        return []
    try:
        from django_idempotency.stores.cache import redis_cache, redis_client

        policy = redis_client(alias, redis_cache(alias)).info("memory").get("maxmemory_policy")
    except Exception as exc:  # a check reports an unreachable Redis; it must not crash
        return [message("W004", alias=alias, error=exc)]
    if policy != "noeviction":
        return [message("W003", alias=alias, policy=policy)]
    return []
