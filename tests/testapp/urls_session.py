"""The test app's URLs plus the views of ``views_session``."""

from __future__ import annotations

from django.urls import path

from tests.testapp import views_session
from tests.testapp.urls import urlpatterns as testapp_urlpatterns

urlpatterns = [
    path("session/claim-then-lock/", views_session.claim_then_lock),
    path("session/lock-then-claim/", views_session.lock_then_claim),
    path("session/raises/", views_session.raises),
    *testapp_urlpatterns,
]
