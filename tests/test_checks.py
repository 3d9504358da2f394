"""System checks: each ID fires on the configuration it guards against, and only then."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.checks import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import override_settings

from django_idempotency import checks
from django_idempotency.checks import CATALOGUE

PREFIX = "django_idempotency."
DJANGO_REDIS = "django_redis.cache.RedisCache"
SQLITE = connections["default"].vendor == "sqlite"


# Django 6.1's check command reads every database.
pytestmark = pytest.mark.django_db(databases=["default", "other"])


def ids(issues):
    return sorted(issue.id.removeprefix(PREFIX) for issue in issues)


def settings_of(**overrides):
    return override_settings(**{f"IDEMPOTENCY_{name}": value for name, value in overrides.items()})


def check_command(*args):
    """Run ``manage.py check``; return everything it reported, errors included."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check", *args, stdout=out, stderr=err)
    except SystemCheckError as error:
        return str(error)
    return out.getvalue() + err.getvalue()


def a_hook(*args):
    return args


#: (settings, check ID) pairs: each configuration triggers exactly that check.
TRIGGERED = [
    ({"TTL": 0}, "E001"),
    ({"TTL": -60}, "E001"),
    ({"TTL": "24h"}, "E001"),
    ({"TTL": timedelta(0)}, "E001"),
    ({"LEASE": True}, "E001"),
    ({"LEASE": timedelta(seconds=-1)}, "E001"),
    ({"STORE_STATUSES": [200, 99]}, "E002"),
    ({"STORE_STATUSES": [200, 600]}, "E002"),
    ({"STORE_STATUSES": "200"}, "E002"),
    ({"STORE_STATUSES": [200, "201"]}, "E002"),
    ({"STORE_STATUSES": 200}, "E002"),
    ({"MISMATCH_STATUS": 500}, "E003"),
    ({"MISMATCH_STATUS": "422"}, "E003"),
    ({"IN_PROGRESS_STATUS": 200}, "E003"),
    ({"HEADER": "Idempotency Key"}, "E004"),
    ({"HEADER": "Idempotency_Key"}, "E004"),
    ({"HEADER": ""}, "E004"),
    ({"HEADER": None}, "E004"),
    ({"REPLAYED_HEADER": "Replayed:"}, "E004"),
    ({"KEY_MIN_LENGTH": 0}, "E005"),
    ({"KEY_MIN_LENGTH": 10, "KEY_MAX_LENGTH": 5}, "E005"),
    ({"KEY_MAX_LENGTH": 256}, "E005"),
    ({"KEY_MIN_LENGTH": "8"}, "E005"),
    ({"METHODS": "POST"}, "E006"),
    ({"METHODS": ["POST", 1]}, "E006"),
    ({"REPLAY_HEADERS": "Location"}, "E006"),
    ({"FINGERPRINT_INCLUDE": ["amount", None]}, "E006"),
    ({"FINGERPRINT_EXCLUDE": "client_timestamp"}, "E006"),
    ({"MODE": "atomc"}, "E007"),
    ({"STORE": "redis"}, "E007"),
    ({"REPLAY": "body"}, "E007"),
    ({"ANONYMOUS": "allow"}, "E007"),
    ({"MODE": "atomic", "STORE": "cache", "CACHE_ALIAS": "idem"}, "E008"),
    ({"LOCK_TIMEOUT": -1}, "E009"),
    ({"LOCK_TIMEOUT": "5"}, "E009"),
    ({"WAIT": -0.5}, "E009"),
    ({"RETRY_AFTER": -1}, "E009"),
    ({"RETRY_AFTER": 1.5}, "E009"),
    ({"MAX_BODY_SIZE": -1}, "E009"),
    ({"PURGE_BATCH_SIZE": 0}, "E009"),
    ({"PURGE_BATCH_SIZE": 10.5}, "E009"),
    ({"SCOPE": "tests.nowhere.scope"}, "E010"),
    ({"CLOCK": "django.utils.timezone.no_such_clock"}, "E010"),
    ({"FINGERPRINT": "tests"}, "E010"),
    ({"ERROR_RESPONSE": 42}, "E011"),
    ({"KEY_VALIDATOR": "django_idempotency.conf.DEFAULT_TTL"}, "E011"),
    ({"SCOPE": None}, "E011"),
    ({"REDACT": ""}, "E010"),
    ({"METHODS": ["POST", "get"]}, "W001"),
    ({"METHODS": ["HEAD", "OPTIONS", "TRACE", "PATCH"]}, "W001"),
    ({"TTL": 10, "LEASE": 30}, "W006"),
    ({"ENABLED": False}, "W007"),
    ({"TTLS": 60}, "W008"),
    ({"NO_SUCH_THING": 1}, "W008"),
]

#: Valid neighbours of the configurations above: no check fires.
NOT_TRIGGERED = [
    {},
    {"TTL": 60, "LEASE": 2.5},
    {"TTL": timedelta(hours=1), "LEASE": timedelta(hours=1)},
    {"STORE_STATUSES": range(200, 300)},
    {"STORE_STATUSES": frozenset({201, 402})},
    {"MISMATCH_STATUS": 409, "IN_PROGRESS_STATUS": 429},
    {"HEADER": "X-Request-Key", "REPLAYED_HEADER": "X-Replayed"},
    {"KEY_MIN_LENGTH": 8, "KEY_MAX_LENGTH": 64},
    {"KEY_MIN_LENGTH": 255, "KEY_MAX_LENGTH": 255},
    {"METHODS": ["POST", "PUT", "DELETE", "patch"]},
    {"REPLAY_HEADERS": ("Location",), "FINGERPRINT_INCLUDE": None, "FINGERPRINT_EXCLUDE": []},
    {"FINGERPRINT_INCLUDE": {"amount"}},
    {"MODE": "lease", "STORE": "database", "REPLAY": "conflict", "ANONYMOUS": "reject"},
    {"ANONYMOUS": "bypass"},
    {"LOCK_TIMEOUT": None, "WAIT": 0, "RETRY_AFTER": 0, "MAX_BODY_SIZE": 0},
    {"LOCK_TIMEOUT": 0.5, "WAIT": 2.5, "PURGE_BATCH_SIZE": 1},
    {"FINGERPRINT": False, "REDACT": None, "KEY_VALIDATOR": None},
    {"FINGERPRINT": "", "KEY_VALIDATOR": str.isalnum, "CLOCK": "django.utils.timezone.now"},
    {"SCOPE": "django_idempotency.scope.default_scope", "ERROR_RESPONSE": a_hook},
]


@pytest.mark.parametrize(("overrides", "code"), TRIGGERED)
def test_check_settings_fires_on_the_bad_value(overrides, code):
    with settings_of(**overrides):
        issues = checks.check_settings()
    assert ids(issues) == [code]
    assert issues[0].hint
    text = issues[0].msg + issues[0].hint
    assert any(f"IDEMPOTENCY_{name}" in text for name in overrides)


@pytest.mark.parametrize(("overrides", "code"), TRIGGERED)
def test_check_command_reports_the_bad_value(overrides, code):
    with settings_of(**overrides):
        output = check_command()
    assert PREFIX + code in output


@pytest.mark.parametrize("overrides", NOT_TRIGGERED)
def test_valid_settings_pass_every_check(overrides):
    with settings_of(**overrides):
        assert checks.check_settings() == []
        output = check_command()
    assert not re.search(r"django_idempotency\.(E0|W00[136-8])", output)


def test_errors_stop_the_check_command():
    with settings_of(TTL=0), pytest.raises(SystemCheckError, match=r"django_idempotency\.E001"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_messages_name_the_setting_and_value():
    with settings_of(MISMATCH_STATUS=500):
        (issue,) = checks.check_settings()
    assert issue.msg == "IDEMPOTENCY_MISMATCH_STATUS is 500; it must be a 4xx status code."
    assert (
        issue.hint == "Set IDEMPOTENCY_MISMATCH_STATUS to an integer from 400 to 499 (default 422)."
    )


def test_unknown_setting_suggests_the_closest_name():
    with settings_of(TTLS=60, PURGE_BATCHSIZE=10, ZZZ=1):
        issues = checks.check_settings()
    hints = {issue.msg.split()[0]: issue.hint for issue in issues}
    assert hints["IDEMPOTENCY_TTLS"].startswith("Did you mean IDEMPOTENCY_TTL? ")
    assert hints["IDEMPOTENCY_PURGE_BATCHSIZE"].startswith(
        "Did you mean IDEMPOTENCY_PURGE_BATCH_SIZE? "
    )
    assert hints["IDEMPOTENCY_ZZZ"].startswith("See https://")


def test_disabled_app_is_fine_in_debug():
    with settings_of(ENABLED=False), override_settings(DEBUG=True):
        assert checks.check_settings() == []


def test_known_settings_are_the_ones_conf_reads():
    known = checks.known_settings()
    assert "IDEMPOTENCY_TTL" in known
    assert "IDEMPOTENCY_PURGE_BATCH_SIZE" in known
    assert len(known) == len(set(known)) >= 30


# The database the key records are written to.


def test_sqlite_in_production_is_a_warning_and_other_databases_are_not():
    issues = checks.check_database()
    assert ids(issues) == (["W002"] if SQLITE else [])
    assert ("django_idempotency.W002" in check_command()) is SQLITE
    if SQLITE:
        assert issues[0].obj.__name__ == "IdempotencyKey"
        assert "'default'" in issues[0].msg


def test_sqlite_in_debug_or_with_the_cache_store_is_not_a_warning():
    with override_settings(DEBUG=True):
        assert checks.check_database() == []
    with settings_of(STORE="cache", MODE="lease"):
        assert checks.check_database() == []


@pytest.mark.skipif(not SQLITE, reason="the warning is about SQLite")
@override_settings(DATABASE_ROUTERS=["tests.routers.KeysOnOtherDatabase"])
def test_sqlite_warning_names_the_routed_database():
    (issue,) = checks.check_database()
    assert "'other'" in issue.msg


@override_settings(DEBUG=True)
def test_atomic_requests_with_lease_mode_on_the_database_store_is_a_warning(monkeypatch):
    monkeypatch.setitem(connections["default"].settings_dict, "ATOMIC_REQUESTS", True)
    with settings_of(MODE="lease"):
        assert ids(checks.check_database()) == ["W005"]
        assert "django_idempotency.W005" in check_command()
    with settings_of(MODE="atomic"):
        assert checks.check_database() == []
    with settings_of(MODE="lease", STORE="cache"):
        assert checks.check_database() == []
    monkeypatch.setitem(connections["default"].settings_dict, "ATOMIC_REQUESTS", False)
    with settings_of(MODE="lease"):
        assert checks.check_database() == []


# The cache behind the cache store.

CACHE_CASES = [
    (
        {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://127.0.0.1:6379/0"}},
        "nope",
        "E012",
    ),
    ({"idem": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}, "idem", "E013"),
    ({"idem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}, "idem", "E014"),
    (
        {
            "idem": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": "/tmp/x",
            }
        },
        "idem",
        "E014",
    ),
    (
        {"idem": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}},
        "idem",
        "E015",
    ),
]


@pytest.mark.parametrize(
    "backend", ["django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache"]
)
def test_the_cache_store_accepts_djangos_own_redis_backend_and_django_redis(backend):
    caches = {"idem": {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:6379/0"}}
    with (
        override_settings(CACHES=caches),
        settings_of(STORE="cache", MODE="lease", CACHE_ALIAS="idem"),
    ):
        assert checks.check_cache() == []


@pytest.mark.parametrize(("caches", "alias", "code"), CACHE_CASES)
def test_cache_store_needs_a_shared_redis_cache(caches, alias, code):
    with (
        override_settings(CACHES=caches),
        settings_of(STORE="cache", MODE="lease", CACHE_ALIAS=alias),
    ):
        issues = checks.check_cache()
        assert ids(issues) == [code]
        assert "IDEMPOTENCY_CACHE_ALIAS" in issues[0].hint
        assert PREFIX + code in check_command()
    with override_settings(CACHES=caches), settings_of(CACHE_ALIAS=alias):
        assert checks.check_cache() == []


def test_a_django_redis_cache_passes():
    caches = {"idem": {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://127.0.0.1:6379/0"}}
    with (
        override_settings(CACHES=caches),
        settings_of(STORE="cache", MODE="lease", CACHE_ALIAS="idem"),
    ):
        assert checks.check_cache() == []
        assert not re.search(r"django_idempotency\.E01[2-5]", check_command())


def test_redis_checks_run_only_when_databases_are_checked():
    caches = {"idem": {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://127.0.0.1:1/0"}}
    with (
        override_settings(CACHES=caches),
        settings_of(STORE="cache", MODE="lease", CACHE_ALIAS="idem"),
    ):
        assert checks.check_redis_eviction(databases=None) == []
        assert "django_idempotency.W004" not in check_command()


@pytest.mark.django_db(databases=["default", "other"])
def test_unreachable_redis_is_a_warning():
    caches = {
        "idem": {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5},
        }
    }
    with (
        override_settings(CACHES=caches),
        settings_of(STORE="cache", MODE="lease", CACHE_ALIAS="idem"),
    ):
        assert ids(checks.check_redis_eviction(databases=["default"])) == ["W004"]
        assert "django_idempotency.W004" in check_command("--database", "default")
    with override_settings(CACHES=caches):
        assert checks.check_redis_eviction(databases=["default"]) == []


@pytest.mark.redis
@pytest.mark.django_db(databases=["default", "other"])
def test_redis_that_may_evict_keys_is_a_warning():
    from django_redis import get_redis_connection

    redis = get_redis_connection("redis")
    old = redis.config_get("maxmemory-policy")["maxmemory-policy"]
    with settings_of(STORE="cache", MODE="lease", CACHE_ALIAS="redis"):
        try:
            redis.config_set("maxmemory-policy", "allkeys-lru")
            issues = checks.check_redis_eviction(databases=["default"])
            output = check_command("--database", "default")
            plain_output = check_command()
            redis.config_set("maxmemory-policy", "volatile-ttl")
            volatile = checks.check_redis_eviction(databases=["default"])
            redis.config_set("maxmemory-policy", "noeviction")
            safe = checks.check_redis_eviction(databases=["default"])
        finally:
            redis.config_set("maxmemory-policy", old)
    assert ids(issues) == ["W003"]
    assert "'allkeys-lru'" in issues[0].msg
    assert "noeviction" in issues[0].hint
    assert "django_idempotency.W003" in output
    assert "django_idempotency.W003" not in plain_output
    assert ids(volatile) == ["W003"]
    assert safe == []


# The catalogue.


def test_every_check_is_registered():
    registered = set(registry.registry.registered_checks)
    for function in (
        checks.check_settings,
        checks.check_database,
        checks.check_cache,
        checks.check_redis_eviction,
        checks.check_identity,
    ):
        assert function in registered
    assert "idempotency" in registry.registry.tags_available()


def test_every_catalogued_check_is_tested_and_documented():
    tested = {code for _settings, code in TRIGGERED} | {code for *_rest, code in CACHE_CASES}
    # E016 is fired against a folding MariaDB column in tests/test_identity.py.
    tested |= {"W002", "W003", "W004", "W005", "E016"}
    assert tested == set(CATALOGUE)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "checks.md").read_text()
    for code in CATALOGUE:
        assert f"`django_idempotency.{code}`" in docs, code
