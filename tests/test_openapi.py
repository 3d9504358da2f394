"""The drf-spectacular schema documents the protocol on every idempotent operation, and only there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.validation import validate_schema

from django_idempotency.openapi import PROBLEM_COMPONENT, IdempotencySchemaMixin, decorator_options
from tests.testapp import views

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM_COMPONENT}"}


class ProjectSchema(IdempotencySchemaMixin, SpectacularAutoSchema):
    """A project's own AutoSchema subclass, with the mixin added."""


SCRIPT = """
import json
import sys

import django

django.setup()
from drf_spectacular.generators import SchemaGenerator

with open(sys.argv[1], "w") as out:
    json.dump(SchemaGenerator().get_schema(public=True), out, default=str)
"""


def generate(
    tmp_path,
    *,
    schema_class="django_idempotency.openapi.AutoSchema",
    base="tests.settings",
    **extra,
):
    """Return the schema of ``base``'s URLs, generated in a process whose settings add ``extra``.

    ``@api_view`` binds ``DEFAULT_SCHEMA_CLASS`` when the view module is imported, so the setting
    lives in a settings module, as it does in a project, not in ``override_settings``.
    """
    lines = [
        f"from {base} import *",
        f"REST_FRAMEWORK = {{**REST_FRAMEWORK, 'DEFAULT_SCHEMA_CLASS': {schema_class!r}}}",
    ]
    lines += [f"{name} = {value!r}" for name, value in extra.items()]
    (tmp_path / "schema_settings.py").write_text("\n".join(lines) + "\n")
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "schema_settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'schema.sqlite3'}",
        "PYTHONPATH": os.pathsep.join(map(str, [tmp_path, EXAMPLE, root])),
    }
    output = tmp_path / "schema.json"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    schema = json.loads(output.read_text())
    validate_schema(schema)
    return schema


def key_header(operation, name="Idempotency-Key"):
    found = [
        p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == name
    ]
    assert len(found) <= 1
    return found[0] if found else None


def assert_idempotent(operation, *, required, name="Idempotency-Key"):
    header = key_header(operation, name)
    assert header is not None, operation
    assert header["required"] is required
    assert header["schema"]["type"] == "string"
    responses = operation["responses"]
    for status in ("400", "409", "422"):
        assert responses[status]["content"]["application/problem+json"]["schema"] == PROBLEM_REF
    assert "Retry-After" in responses["409"]["headers"]


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("schema"))


@pytest.mark.parametrize(
    ("path", "method", "required"),
    [
        ("/api/charges/", "post", False),  # @api_view + bare @idempotent
        ("/api/charges/", "patch", False),
        ("/api/required/", "post", True),  # @idempotent(required=True)
        ("/apiview/charges/", "post", False),  # @idempotent on an APIView method
        ("/viewset/charges/", "post", True),  # IdempotentMixin, idempotency_required = True
        ("/viewset/charges/{id}/", "patch", True),
        ("/viewset/charges/{id}/refund/", "post", True),  # a mixin ViewSet's @action
        ("/viewset/plain/capture/", "post", False),  # @idempotent on a ViewSet @action
    ],
)
def test_idempotent_operations_document_the_protocol(schema, path, method, required):
    assert_idempotent(schema["paths"][path][method], required=required)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/charges/", "get"),  # safe methods are never touched
        ("/api/charges/", "put"),  # not among the policy's methods (POST and PATCH)
        ("/viewset/charges/", "get"),
        ("/viewset/charges/{id}/", "put"),
        ("/viewset/charges/{id}/", "delete"),
    ],
)
def test_other_operations_are_left_alone(schema, path, method):
    operation = schema["paths"][path][method]
    assert key_header(operation) is None
    assert not {"400", "409", "422"} & set(operation["responses"])


def test_replayable_responses_carry_the_replayed_header(schema):
    created = schema["paths"]["/viewset/charges/"]["post"]["responses"]["201"]
    assert created["headers"]["Idempotent-Replayed"]["schema"] == {
        "type": "string",
        "enum": ["true"],
    }


def test_conflict_replay_documents_no_replayed_header(schema):
    # replay="conflict" never replays a body: duplicates get 409.
    ok = schema["paths"]["/api/secret/"]["post"]["responses"]["200"]
    assert "Idempotent-Replayed" not in ok.get("headers", {})


def test_statuses_follow_the_view_options(schema):
    # mismatch_status=409: the mismatch shares the 409 response, and no 422 is announced.
    custom = schema["paths"]["/api/custom/"]["post"]["responses"]
    assert "422" not in custom
    assert "different payload" in custom["409"]["description"]
    assert "in progress" in custom["409"]["description"]
    # anonymous="reject" (the default) adds the 403 problem.
    rejecting = schema["paths"]["/api/no-anonymous/"]["post"]["responses"]
    assert rejecting["403"]["content"]["application/problem+json"]["schema"] == PROBLEM_REF
    # Refusing keyed anonymous requests is the default, so every view documents the 403.
    assert "403" in schema["paths"]["/api/charges/"]["post"]["responses"]


def test_problem_component(schema):
    problem = schema["components"]["schemas"][PROBLEM_COMPONENT]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["status"] == {"type": "integer"}


def test_settings_rename_the_headers(tmp_path):
    schema = generate(
        tmp_path,
        IDEMPOTENCY_HEADER="X-Request-Key",
        IDEMPOTENCY_REPLAYED_HEADER="X-Replayed",
        IDEMPOTENCY_REQUIRED=True,
    )
    operation = schema["paths"]["/api/charges/"]["post"]
    assert_idempotent(operation, required=True, name="X-Request-Key")
    assert key_header(operation) is None
    assert "X-Replayed" in operation["responses"]["200"]["headers"]


def test_disabled_app_documents_nothing(tmp_path):
    schema = generate(tmp_path, IDEMPOTENCY_ENABLED=False)
    assert key_header(schema["paths"]["/api/required/"]["post"]) is None
    assert PROBLEM_COMPONENT not in schema.get("components", {}).get("schemas", {})


def test_mixin_on_a_project_schema_class(tmp_path):
    schema = generate(tmp_path, schema_class="tests.test_openapi.ProjectSchema")
    assert_idempotent(schema["paths"]["/api/required/"]["post"], required=True)
    assert key_header(schema["paths"]["/api/charges/"]["get"]) is None


def test_without_the_schema_class_nothing_is_added(tmp_path):
    schema = generate(tmp_path, schema_class="drf_spectacular.openapi.AutoSchema")
    assert key_header(schema["paths"]["/api/required/"]["post"]) is None


@pytest.fixture(scope="module")
def example_schema(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("example"), base="example.settings")


def test_example_project_schema(example_schema):
    paths = example_schema["paths"]
    assert_idempotent(paths["/api/charges/"]["post"], required=True)  # the mixin
    assert_idempotent(paths["/api/refunds/"]["post"], required=True)  # @idempotent(required=True)
    assert "Idempotent-Replayed" in paths["/api/charges/"]["post"]["responses"]["201"]["headers"]
    assert key_header(paths["/api/charges/"]["get"]) is None
    assert key_header(paths["/api/charges/{id}/"]["get"]) is None
    assert "409" not in paths["/api/charges/{id}/"]["delete"]["responses"]


def test_decorator_options_are_read_from_the_view_function():
    def marked(request):
        return None

    marked.idempotency_options = {"required": True}
    assert decorator_options(marked) == {"required": True}
    assert decorator_options(lambda request: None) is None
    assert decorator_options(views.api_charge_custom.cls.post) is None  # DRF's handler, not ours
