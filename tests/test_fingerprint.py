from __future__ import annotations

import json

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory

from django_idempotency.fingerprint import canonical_query, default_fingerprint

factory = RequestFactory()


def fp(body, *, path="/p/", content_type="application/json", method="post", **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    request = getattr(factory, method)(path, data=data, content_type=content_type)
    return default_fingerprint(request, **kwargs)


def test_json_key_order_and_whitespace_do_not_matter():
    assert fp('{"a": 1, "b": [1, 2]}') == fp('{"b":[1,2],"a":1}')


def test_json_values_matter():
    assert fp({"a": 1}) != fp({"a": 2})


def test_method_path_and_query_matter():
    assert fp({"a": 1}, path="/p/?x=1") != fp({"a": 1}, path="/p/?x=2")
    assert fp({"a": 1}, path="/p/") != fp({"a": 1}, path="/q/")
    assert fp({"a": 1}, method="post") != fp({"a": 1}, method="patch")


def test_query_parameter_order_does_not_matter_but_the_order_of_a_names_values_does():
    assert fp({}, path="/p/?a=1&b=2") == fp({}, path="/p/?b=2&a=1")
    # Django reads the last value of a repeated name: a=0 here.
    assert canonical_query("b=2&a=1&a=0") == "a=1&a=0&b=2"


def test_content_type_parameters_are_ignored():
    assert fp({"a": 1}) == fp({"a": 1}, content_type="application/json; charset=utf-8")


def test_form_bodies_are_sorted():
    form = "application/x-www-form-urlencoded"
    assert fp("a=1&b=2", content_type=form) == fp("b=2&a=1", content_type=form)
    assert fp("a=1&b=2", content_type=form) != fp("a=1&b=3", content_type=form)


def test_raw_and_invalid_json_bodies_hash_their_bytes():
    assert fp(b"\x00\x01", content_type="application/octet-stream") != fp(
        b"\x00\x02", content_type="application/octet-stream"
    )
    assert fp("{not json") == fp("{not json")
    assert fp("{not json") != fp("{not json!")


def test_multipart_uses_file_digests():
    def multipart(content, note="n"):
        upload = SimpleUploadedFile("receipt.txt", content)
        request = factory.post("/p/", data={"note": note, "file": upload})
        result = default_fingerprint(request)
        assert request.FILES["file"].read() == content, (
            "the view must still be able to read the upload"
        )
        return result

    assert multipart(b"one") == multipart(b"one")
    assert multipart(b"one") != multipart(b"two")
    assert multipart(b"one") != multipart(b"one", note="m")


def test_exclude_drops_volatile_fields_including_nested_ones():
    a = {"amount": 5, "client_timestamp": 1, "meta": {"trace": "x", "kind": "k"}}
    b = {"amount": 5, "client_timestamp": 2, "meta": {"trace": "y", "kind": "k"}}
    assert fp(a) != fp(b)
    assert fp(a, exclude={"client_timestamp", "meta.trace"}) == fp(
        b, exclude={"client_timestamp", "meta.trace"}
    )
    c = {**b, "amount": 6}
    assert fp(a, exclude={"client_timestamp", "meta.trace"}) != fp(
        c, exclude={"client_timestamp", "meta.trace"}
    )


def test_include_keeps_only_named_fields():
    assert fp({"amount": 5, "note": "a"}, include={"amount"}) == fp(
        {"amount": 5, "note": "b"}, include={"amount"}
    )
    assert fp({"amount": 5}, include={"amount"}) != fp({"amount": 6}, include={"amount"})


def test_include_and_exclude_together():
    a = {"amount": 5, "meta": {"trace": 1}}
    b = {"amount": 5, "meta": {"trace": 2}}
    both = {"include": {"amount", "meta"}, "exclude": {"meta"}}
    assert fp(a, **both) == fp(b, **both)


def test_a_body_already_consumed_by_a_parser_falls_back_to_the_parsed_data():
    from rest_framework.parsers import JSONParser
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    def consumed(body):
        request = Request(
            APIRequestFactory().post("/p/", body, content_type="application/json"),
            parsers=[JSONParser()],
        )
        assert request.data  # the parser reads the stream, so request.body is gone
        return default_fingerprint(request)

    assert consumed('{"a": 1, "b": 2}') == consumed('{"b": 2, "a": 1}')
    assert consumed('{"a": 1}') != consumed('{"a": 2}')


def test_a_form_body_consumed_by_drf_falls_back_to_its_query_dict():
    from rest_framework.parsers import FormParser
    from rest_framework.request import Request

    def consumed(body):
        form = "application/x-www-form-urlencoded"
        request = Request(factory.post("/p/", data=body, content_type=form), parsers=[FormParser()])
        assert request.data
        return default_fingerprint(request)

    assert consumed("a=1&b=2") == consumed("b=2&a=1")
    assert consumed("a=1") != consumed("a=2")


def test_include_and_exclude_paths_through_non_objects():
    data = {"amount": 5, "items": [1, 2], "card": "tok"}
    assert fp(data, include={"items.0", "amount"}) == fp(
        {"amount": 5}, include={"items.0", "amount"}
    )
    assert fp(data, exclude={"missing.field", "card.id", "items.x"}) == fp(data)
