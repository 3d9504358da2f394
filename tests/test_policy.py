"""Options resolve against settings at request time, and bad values name what to fix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_idempotency.conf import conf
from django_idempotency.policy import Policy


def test_defaults():
    policy = Policy.build()
    assert policy.methods == {"POST", "PATCH"}
    assert policy.required is False
    assert policy.ttl == timedelta(hours=24)
    assert policy.store_statuses == frozenset(range(200, 400))
    assert (policy.mismatch_status, policy.in_progress_status) == (422, 409)
    assert policy.lock_timeout == 5.0
    assert policy.replayed_header == "Idempotent-Replayed"


def test_options_override_settings_and_none_means_the_setting():
    with override_settings(IDEMPOTENCY_TTL=30, IDEMPOTENCY_METHODS=["post", "put"]):
        policy = Policy.build(required=True, ttl=None)
        assert policy.ttl == timedelta(seconds=30)
        assert policy.methods == {"POST", "PUT"}
        assert policy.required is True


def test_settings_are_read_at_call_time():
    assert conf.HEADER == "Idempotency-Key"
    with override_settings(IDEMPOTENCY_HEADER="X-Idempotency-Key"):
        assert conf.HEADER == "X-Idempotency-Key"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "eventual"}, "'mode'"),
        ({"replay": "never"}, "'replay'"),
        ({"anonymous": "ip"}, "'anonymous'"),
        ({"ttl": 0}, "'ttl'"),
        ({"ttl": "1 day"}, "ttl must be a timedelta"),
        ({"lock_timeout": -1}, "'lock_timeout'"),
        ({"mismatch_status": 200}, "'mismatch_status'"),
        ({"in_progress_status": 503}, "'in_progress_status'"),
        ({"max_body_size": -1}, "'max_body_size'"),
        (
            {"scope": "no.such.module.scope"},
            "Could not import 'no.such.module.scope' for setting 'scope'",
        ),
        ({"scope": 42}, "scope must be a callable or a dotted path"),
    ],
)
def test_bad_values_name_the_option_and_setting(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        Policy.build(**options)


def test_a_bad_setting_is_named():
    with (
        override_settings(IDEMPOTENCY_ERROR_RESPONSE="nope.nothing"),
        pytest.raises(ImproperlyConfigured, match="IDEMPOTENCY_ERROR_RESPONSE"),
    ):
        Policy.build()


def test_unknown_options_are_a_type_error():
    with pytest.raises(TypeError, match="valid options are"):
        Policy.build(ttl_seconds=1)


def test_dotted_paths_are_resolved():
    from django_idempotency.scope import principal

    policy = Policy.build(
        principal="django_idempotency.scope.principal", scope="tests.test_policy.tenant"
    )
    assert policy.principal is principal
    assert policy.scope is tenant


def test_the_default_scope_is_left_to_the_engine():
    """The engine builds the default scope from the principal function, method and route."""
    assert Policy.build(scope="django_idempotency.scope.default_scope").scope is None
    assert Policy.build().scope is None


def tenant(request):
    return "tenant"


@pytest.mark.parametrize(("low", "high"), [(0, 10), (10, 5), (1, 256)])
def test_key_bounds_must_fit_the_column(low, high):
    with (
        override_settings(IDEMPOTENCY_KEY_MIN_LENGTH=low, IDEMPOTENCY_KEY_MAX_LENGTH=high),
        pytest.raises(ImproperlyConfigured, match="255"),
    ):
        Policy.build()
