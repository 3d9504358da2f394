"""The cache store: lease-mode key records in Redis, through a django-redis or Django's own Redis cache.

One Redis string per ``(scope, key)`` holds a JSON record (format version ``"v": 1``). A new key
is claimed with ``SET NX PX``; taking over a free record, completing, renewing and releasing are
Lua scripts that compare the fencing token and write in one atomic step.

Two clocks are involved. Every decision (is the lease over, has the record expired) compares the
times stored in the record with the ``now`` the engine passes in, which comes from
``IDEMPOTENCY_CLOCK``: the same rule as the database store, and testable with a fake clock. Redis'
own clock is used only for the key's ``PX`` lifetime, which is set from the same durations
(retention or lease, whichever is longer) so that Redis drops a record at about the time it
stops mattering, never before.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.core.cache import BaseCache, InvalidCacheBackendError, caches
from django.core.cache.backends.redis import RedisCache as BuiltinRedisCache
from django.core.exceptions import ImproperlyConfigured
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

from django_idempotency.conf import conf
from django_idempotency.stores.base import (
    COMPLETED,
    IN_PROGRESS,
    ClaimRequest,
    ClaimTaken,
    Lease,
    Record,
    StoredResponse,
    StoreUnavailable,
    next_fencing_token,
)
from django_idempotency.stores.cache_format import FORMAT_VERSION, decode, dump, life_ms, to_ms

# Take over a record the engine found free: only if it still carries the token the engine saw and
# is still free at ARGV[4] (epoch ms). An absent key is claimed as SET NX would.
# KEYS[1] key; ARGV: new value, PX ms, expected token, now ms.
TAKE_OVER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if not ok or type(old) ~= 'table' or old.token ~= tonumber(ARGV[3]) then return 0 end
  local free_at = old.expires_at
  if old.status == 'in_progress' and type(old.lease_expires_at) == 'number' then
    free_at = old.lease_expires_at
  end
  if type(free_at) ~= 'number' or free_at > tonumber(ARGV[4]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# The start of the scripts that rewrite a claim (renew, complete): stop (return 0) unless
# KEYS[1] holds an in-progress record of this format version with token ARGV[1], then ``old``.
OWNED_IN_PROGRESS = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, old = pcall(cjson.decode, current)
if not ok or type(old) ~= 'table' or old.v ~= 1 or old.status ~= 'in_progress'
    or old.token ~= tonumber(ARGV[1]) then
  return 0
end
"""

# Renew the lease of an in-progress record held by token ARGV[1]: the JSON object ARGV[2]
# replaces the fields it names, every other field is kept, and the key's life grows by as much
# as the new lease_expires_at lengthens the lease. cjson keeps 14 significant digits, enough for
# epoch milliseconds but not for fencing tokens, so ARGV[2] always carries the token itself.
REWRITE = (
    OWNED_IN_PROGRESS
    + """local update = cjson.decode(ARGV[2])
local kept = {}
for name, value in pairs(old) do
  if update[name] == nil then kept[name] = value end
end
local head = cjson.encode(kept)
local value = ARGV[2]
if head ~= '{}' then value = string.sub(head, 1, -2) .. ',' .. string.sub(ARGV[2], 2) end
local ttl = redis.call('PTTL', KEYS[1])
local longer = 0
if type(old.lease_expires_at) == 'number' then longer = update.lease_expires_at - old.lease_expires_at end
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl + math.max(longer, 0))
else
  redis.call('SET', KEYS[1], value, 'KEEPTTL')
end
return 1
"""
)

# Complete the in-progress record held by token ARGV[1] with the JSON object ARGV[2], kept
# ARGV[3] ms. Only the small in-progress record is decoded: the completion (which carries the
# body) is appended as it came, after the record's fields minus those it names (ARGV[4...]).
# Decoding the completion in Lua cost a fifth of the script's Redis CPU.
COMPLETE = (
    OWNED_IN_PROGRESS
    + """for i = 4, #ARGV do old[ARGV[i]] = nil end
local head = cjson.encode(old)
local value = ARGV[2]
if head ~= '{}' then value = string.sub(head, 1, -2) .. ',' .. string.sub(ARGV[2], 2) end
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
return 1
"""
)

# Delete the in-progress record if it still carries token ARGV[1].
RELEASE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, old = pcall(cjson.decode, current)
if not ok or type(old) ~= 'table' or old.status ~= 'in_progress'
    or old.token ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

_scripts: weakref.WeakKeyDictionary[Redis, dict[str, Script]] = weakref.WeakKeyDictionary()
_scripts_lock = threading.Lock()
#: One write client per built-in Redis cache instance (Django keeps one instance per thread).
_builtin_clients: weakref.WeakKeyDictionary[Any, Redis] = weakref.WeakKeyDictionary()


@contextmanager
def reachable() -> Iterator[None]:
    """Turn every Redis failure (refused, timed out, out of memory, ...) into ``StoreUnavailable``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class CacheStore:
    """Lease-mode key records in the Redis cache named by ``IDEMPOTENCY_CACHE_ALIAS``.

    Keys are ``"<IDEMPOTENCY_CACHE_KEY_PREFIX>:<sha256 of scope and key>"`` passed through the
    cache's ``make_key``, so its ``KEY_PREFIX`` and ``VERSION`` apply. Values are the JSON of
    ``cache_format``, written through the raw client: the cache's serializer and compressor are
    not used.
    """

    def __init__(self, alias: str | None = None, *, prefix: str | None = None) -> None:
        self.alias = conf.CACHE_ALIAS if alias is None else alias
        self.prefix = conf.CACHE_KEY_PREFIX if prefix is None else prefix
        self.cache = redis_cache(self.alias)
        self.client = redis_client(self.alias, self.cache)
        self.scripts = scripts_for(self.client)

    def redis_key(self, scope: str, key: str) -> str:
        """Return the Redis key that holds the record of ``(scope, key)``."""
        digest = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        return str(self.cache.make_key(f"{self.prefix}:{digest}"))

    def lookup(self, scope: str, key: str) -> Record | None:
        """Return the record for ``(scope, key)``, or ``None`` when Redis holds none."""
        with reachable():
            raw = self.client.get(self.redis_key(scope, key))
        return None if raw is None else decode(raw)

    def claim_lease(
        self,
        claim: ClaimRequest,
        *,
        replace: Record | None,
        lease_expires_at: datetime,
        expires_at: datetime,
    ) -> Lease:
        """Store an in-progress claim and return its lease; raise ``ClaimTaken`` if held.

        A new key is claimed with ``SET NX``. A ``replace`` record is taken over only if Redis
        still holds that record (same token) and it is still free at ``claim.now``.
        """
        token = next_fencing_token(0 if replace is None else replace.fencing_token)
        value = dump(
            {
                "v": FORMAT_VERSION,
                "status": IN_PROGRESS,
                "fingerprint": claim.fingerprint,
                "token": token,
                "method": claim.method,
                "path": claim.path,
                "created_at": to_ms(claim.now),
                "lease_expires_at": to_ms(lease_expires_at),
                "expires_at": to_ms(expires_at),
                "completed_at": None,
                "response_status": None,
                "response_headers": None,
                "response_body": None,
            }
        )
        # Redis keeps the record as long as either the lease or the retention needs it.
        px = life_ms(max(lease_expires_at, expires_at) - claim.now)
        name = self.redis_key(claim.scope, claim.key)
        with reachable():
            if replace is None:
                claimed = self.client.set(name, value, nx=True, px=px)
            else:
                args: list[str | int] = [value, px, replace.fencing_token, to_ms(claim.now)]
                claimed = self.scripts["take_over"](keys=[name], args=args)
        if not claimed:
            raise ClaimTaken
        return Lease(scope=claim.scope, key=claim.key, token=token)

    def complete(
        self, lease: Lease, response: StoredResponse, *, now: datetime, expires_at: datetime
    ) -> bool:
        """Store the response if ``lease`` still holds the key; return whether it did.

        Redis keeps the completed record until ``expires_at`` (counted with ``now``).
        """
        body = None if response.body is None else base64.b64encode(response.body).decode()
        update = {
            "v": FORMAT_VERSION,
            "status": COMPLETED,
            "token": lease.token,
            "lease_expires_at": None,
            "expires_at": to_ms(expires_at),
            "completed_at": to_ms(now),
            "response_status": response.status,
            "response_headers": [list(pair) for pair in response.headers],
            "response_body": body,
        }
        args: list[str | int] = [lease.token, dump(update), life_ms(expires_at - now), *update]
        return self._run("complete", lease, args)

    def release(self, lease: Lease) -> bool:
        """Delete the claim if ``lease`` still holds the key; return whether it did."""
        return self._run("release", lease, [lease.token])

    def renew(self, lease: Lease, *, lease_expires_at: datetime) -> bool:
        """Move the claim's lease end to ``lease_expires_at`` if ``lease`` still holds the key.

        Return whether it did. Redis' lifetime for the key grows by as much as the lease does.
        """
        update = {
            "v": FORMAT_VERSION,
            "token": lease.token,
            "lease_expires_at": to_ms(lease_expires_at),
        }
        return self._run("rewrite", lease, [lease.token, dump(update)])

    def _run(self, script: str, lease: Lease, args: list[str | int]) -> bool:
        name = self.redis_key(lease.scope, lease.key)
        with reachable():
            return bool(self.scripts[script](keys=[name], args=args))


def redis_cache(alias: str) -> BaseCache:
    """Return the Redis cache ``alias`` (django-redis or Django's own); raise ``ImproperlyConfigured`` for any other."""
    try:
        cache = caches[alias]
    except InvalidCacheBackendError as exc:
        raise ImproperlyConfigured(
            f"IDEMPOTENCY_CACHE_ALIAS is {alias!r}, which is not in CACHES; add a Redis cache "
            "under that name or point the setting at one."
        ) from exc
    if not isinstance(cache, BuiltinRedisCache) and not is_django_redis(cache):
        backend = f"{type(cache).__module__}.{type(cache).__name__}"
        raise ImproperlyConfigured(
            f"IDEMPOTENCY_CACHE_ALIAS is {alias!r}, a {backend} cache; the cache store needs a "
            "Redis cache shared by every process: 'django.core.cache.backends.redis.RedisCache' "
            "or 'django_redis.cache.RedisCache'."
        )
    return cache


def is_django_redis(cache: BaseCache) -> bool:
    """Return whether ``cache`` is a django-redis cache (without needing django-redis installed)."""
    try:
        from django_redis.cache import RedisCache  # type: ignore[import-untyped]
    except ImportError:
        return False
    return isinstance(cache, RedisCache)


def redis_client(alias: str, cache: BaseCache) -> Redis:
    """Return the redis-py client that reaches the primary of the Redis cache ``alias``.

    Reads go to the primary too: a replica that lags behind a claim could let a duplicate run.
    """
    if isinstance(cache, BuiltinRedisCache):
        backend: Any = cache._cache  # Django's RedisCacheClient; it has no public accessor.
        client = _builtin_clients.get(backend)
        if client is None:
            client = backend.get_client(write=True)
            _builtin_clients[backend] = client
        return client
    from django_redis import get_redis_connection  # type: ignore[import-untyped]

    try:
        found: Redis = get_redis_connection(alias)
    except NotImplementedError as exc:
        raise ImproperlyConfigured(
            f"The cache {alias!r} (IDEMPOTENCY_CACHE_ALIAS) has no single Redis connection (a "
            "sharded CLIENT_CLASS?); the cache store needs django-redis' DefaultClient or "
            "SentinelClient, or Django's own RedisCache."
        ) from exc
    return found


def scripts_for(client: Redis) -> dict[str, Script]:
    """Return the store's Lua scripts registered on ``client``, registering them only once."""
    with _scripts_lock:
        scripts = _scripts.get(client)
        if scripts is None:
            scripts = {
                "take_over": client.register_script(TAKE_OVER),
                "rewrite": client.register_script(REWRITE),
                "complete": client.register_script(COMPLETE),
                "release": client.register_script(RELEASE),
            }
            _scripts[client] = scripts
        return scripts
