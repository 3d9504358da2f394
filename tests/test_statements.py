"""The store's hand-written statements and the compiled lookup stay in step with the model."""

from __future__ import annotations

import pytest
from django.db import connection

from django_idempotency.models import IdempotencyKey
from django_idempotency.stores.lookup import compiled_lookup
from django_idempotency.stores.statements import (
    CLAIM_FIELDS,
    COMPLETION_FIELDS,
    IDENTITY_FIELDS,
    claim_values,
    statements,
)

pytestmark = pytest.mark.django_db

COLUMNS = {field.column for field in IdempotencyKey._meta.concrete_fields}
PK = IdempotencyKey._meta.pk.column


def quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def test_a_claim_writes_every_column_but_the_primary_key():
    """A new or renamed field must reach the INSERT, or the row would miss a NOT NULL column."""
    assert {field.column for field in CLAIM_FIELDS} == COLUMNS - {PK}
    insert = statements("default").insert
    for name in COLUMNS - {PK}:
        assert quoted(name) in insert, name


def test_a_take_over_rewrites_every_column_but_the_identity():
    take_over = statements("default").take_over
    for field in CLAIM_FIELDS:
        assignment = f"{quoted(field.column)} = %s"
        assert (assignment in take_over) is (field.attname not in IDENTITY_FIELDS), field.attname


def test_completion_writes_model_columns_only():
    names = {field.name for field in IdempotencyKey._meta.concrete_fields}
    assert set(COMPLETION_FIELDS) <= names
    complete = statements("default").complete
    for name in COMPLETION_FIELDS:
        assert f"{quoted(IdempotencyKey._meta.get_field(name).column)} = %s" in complete


def test_the_lookup_reads_every_field():
    """A replay is built from the lookup's values alone, with no model instance."""
    names = {field.attname for field in IdempotencyKey._meta.concrete_fields}
    assert set(compiled_lookup("default").names) == names


def test_claim_values_refuse_what_is_not_a_column():
    with pytest.raises(TypeError, match="not key record columns"):
        claim_values(scope="s", key="k", colour="red")
    values = claim_values(scope="s", key="k")
    assert values["fencing_token"] == 0
    assert values["response_headers"] == []
