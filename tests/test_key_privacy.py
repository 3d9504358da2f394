"""The raw Idempotency-Key reaches no log: not the database server's, not Django's error report.

Issue 10, item 3. A key is a client's secret-ish handle on a payment; logs are read by far more
people than the key table. Each test sends a distinctive key and greps what an operator reads.
"""

from __future__ import annotations

import base64
import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core import mail
from django.core.signals import got_request_exception
from django.test import Client
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter
from rest_framework.test import APIClient

from tests.reliability.private_postgres import PrivatePostgres, binaries
from tests.reliability.server import Reply, Server

#: CI sets this: a test that cannot run its service fails instead of skipping.
REQUIRE_ALL = "IDEMPOTENCY_REQUIRE_ALL"
PASSWORD = "privacy"
#: The reliability server's view: DRF, atomic mode, the default lock timeout (5 s).
CHARGES = "/charges/"
#: Longer than the default lock timeout, so a duplicate of it gets the 409 of a lock timeout.
HOLD_PAST_LOCK_TIMEOUT = 7
RACERS = 4


def distinctive_key() -> str:
    return f"secret-{uuid.uuid4().hex}"


def skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_ALL):
        pytest.fail(f"{reason} ({REQUIRE_ALL} is set)")
    pytest.skip(reason)


# --- 1. PostgreSQL's server log, with the server's default logging settings ------------------


@pytest.fixture
def logging_cluster() -> Iterator[PrivatePostgres]:
    """A private cluster whose only logging setting is its destination: ``server.log``.

    ``pg_ctl -l`` sends the server's stderr there; ``log_min_error_statement``,
    ``log_error_verbosity`` and the rest keep PostgreSQL's defaults, as on most servers.
    """
    if binaries() is None:
        skip_or_fail("no PostgreSQL server binaries under /usr/lib/postgresql to run a cluster")
    cluster = PrivatePostgres()
    try:
        yield cluster
    finally:
        cluster.destroy()


def server_log(cluster: PrivatePostgres) -> bytes:
    return (cluster.directory / "server.log").read_bytes()


def create_user(url: str, username: str) -> str:
    """Create a committed user in the cluster's database; return its Basic credentials."""
    import psycopg

    with psycopg.connect(url) as db:
        db.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "VALUES (%s, false, %s, '', '', '', false, true, now())",
            [make_password(PASSWORD), username],
        )
    token = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return f"Basic {token}"


def race(server: Server, key: str, auth: str, *, sleep: float) -> list[Reply]:
    """Send ``RACERS`` identical requests with ``key`` at once; return their replies."""
    barrier = threading.Barrier(RACERS)
    replies: list[Reply | BaseException] = [RuntimeError("did not finish")] * RACERS

    def send(index: int) -> None:
        try:
            barrier.wait(10)
            replies[index] = server.post_json(
                CHARGES, {"ref": "privacy", "amount": 1, "sleep": sleep}, key=key, auth=auth
            )
        except BaseException as exc:
            replies[index] = exc

    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


@pytest.mark.postgresql
@pytest.mark.timeout(150)
def test_postgresql_server_log_never_shows_the_key(logging_cluster, tmp_path):
    url = logging_cluster.create_database("privacy")
    auth = create_user(url, "privacy")
    reports = tmp_path / "reports"
    reports.mkdir()
    server = Server(url, workers=RACERS, report_dir=reports, log=tmp_path / "gunicorn.log")
    try:
        # Concurrent duplicates: every one but the first meets the first's claim on the index.
        raced = distinctive_key()
        replies = race(server, raced, auth, sleep=1)
        assert sorted(r.status for r in replies) == [201] * RACERS, replies
        assert sum(r.replayed for r in replies) == RACERS - 1, replies

        # A lock timeout: the duplicate gives up waiting for the first request's claim.
        held = distinctive_key()
        waited = race(server, held, auth, sleep=HOLD_PAST_LOCK_TIMEOUT)
        statuses = sorted(r.status for r in waited)
        assert statuses.count(201) == 1 and statuses.count(409) == RACERS - 1, waited
    finally:
        server.stop()

    log = server_log(logging_cluster)
    # The log is the live server's: it recorded its start (so a missing key means something).
    assert b"database system is ready to accept connections" in log
    leaks = {
        path: [line for line in log.splitlines() if key.encode() in line]
        for path, key in (("duplicate", raced), ("lock timeout", held))
    }
    leaks = {path: lines for path, lines in leaks.items() if lines}
    assert not leaks, f"the raw key is in PostgreSQL's server log: {leaks}"
    # The application's own log (gunicorn's stderr: warnings and request errors) neither.
    output = server.output()
    assert raced not in output and held not in output, "the raw key is in the application's log"


# --- 2. Django's technical 500 report: the DEBUG page and mail_admins ------------------------

#: One distinctive key per test run, so no earlier output can contain it.
KEY = distinctive_key()


def in_engine(filename: str) -> bool:
    return f"{os.sep}django_idempotency{os.sep}" in filename


@pytest.fixture
def reports() -> Iterator[list[str]]:
    """Render Django's HTML and text error reports for every request that raises.

    A ``got_request_exception`` receiver runs inside Django's handler, where ``sys.exc_info()``
    is what the DEBUG page and ``mail_admins`` render: the frames from the handler to the raise.
    Appended per request: the HTML report, the text report, the number of the engine's frames,
    and the engine's frame variables that show the key.
    """
    rendered: list[str] = []

    def render(sender, request=None, **kwargs):
        reporter = ExceptionReporter(request, *sys.exc_info())
        rendered.append(reporter.get_traceback_html())
        rendered.append(reporter.get_traceback_text())
        frames = reporter.get_traceback_frames()
        engine = [frame for frame in frames if in_engine(frame["filename"])]
        rendered.append(str(len(engine)))
        offenders = [
            f"{Path(frame['filename']).name}:{frame['function']} {name}"
            for frame in engine
            for name, value in frame["vars"]
            if KEY in str(value)
        ]
        rendered.append("\n".join(offenders))

    got_request_exception.connect(render, dispatch_uid="test_key_privacy")
    try:
        yield rendered
    finally:
        got_request_exception.disconnect(dispatch_uid="test_key_privacy")


@pytest.fixture
def admin_mail(settings) -> Iterator[None]:
    """Mail the admins an HTML report of every 500, as a project with ``ADMINS`` does."""
    import django

    settings.ADMINS = (
        ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]
    )
    handler = AdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@pytest.mark.django_db
@pytest.mark.urls("tests.testapp.urls_session")
@pytest.mark.parametrize(
    ("url", "client_class"),
    [
        pytest.param("/session/raises/", Client, id="django-view"),
        pytest.param("/api/key-only/", APIClient, id="drf-view"),
    ],
)
def test_error_report_never_shows_the_key(reports, admin_mail, url, client_class):
    client = client_class(raise_request_exception=False)
    user = User.objects.create_user("reporter")
    data = {"amount": 5, "fail": "raise"}
    if client_class is APIClient:
        client.force_authenticate(user)
        response = client.post(url, data, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    else:
        client.force_login(user)
        response = client.post(url, data, content_type="application/json", HTTP_IDEMPOTENCY_KEY=KEY)
    assert response.status_code == 500
    html, text, engine_frames, offenders = reports
    # The report still works: it names the error and shows the frames and their variables.
    for report in (html, text):
        assert "RuntimeError" in report
        assert "the view failed after writing" in report
    assert "Local vars" in html
    assert int(engine_frames) > 0, "the report has no frame of the engine to check"
    assert not offenders, f"engine frame variables show the raw key: {offenders}"
    assert KEY not in html, "the raw key is in the HTML error report"
    assert KEY not in text, "the raw key is in the text error report"
    # What mail_admins sent: the text body and the HTML alternative.
    sent = [message for message in mail.outbox if "Internal Server Error" in message.subject]
    assert sent, [message.subject for message in mail.outbox]
    for message in sent:
        assert KEY not in message.body, "the raw key is in the mail to the admins"
        for content, _mimetype in getattr(message, "alternatives", []):
            assert KEY not in content, "the raw key is in the HTML mail to the admins"
