"""The URLs of ``bench/cost.py``: every form of both creates, the probe, and the example's URLs.

``cost/<view>/plain/``, ``cost/<view>/<mode>-<store>/`` (the library) and
``cost/<view>/floor-<mode>-<store>/`` (the hand-written protocol), for ``view`` toy or realistic.
"""

from __future__ import annotations

from typing import Any

from cost_views import FLOOR_MODES, PLAIN, ceiling_view, floor_view, library_view, probe, trips_view
from django.urls import URLPattern, include, path
from rest_framework.viewsets import ViewSetMixin


def as_view(view_class: Any) -> Any:
    if issubclass(view_class, ViewSetMixin):
        return view_class.as_view({"post": "create"})
    return view_class.as_view()


def routes() -> list[URLPattern]:
    found = []
    for view in PLAIN:
        found.append(path(f"cost/{view}/plain/", as_view(PLAIN[view])))
        found.append(path(f"cost/{view}/ceiling/", as_view(ceiling_view(view))))
        found.append(path(f"cost/{view}/trips/", as_view(trips_view(view))))
        for mode, store in FLOOR_MODES:
            found.append(
                path(f"cost/{view}/{mode}-{store}/", as_view(library_view(view, mode, store)))
            )
            found.append(
                path(f"cost/{view}/floor-{mode}-{store}/", as_view(floor_view(view, mode, store)))
            )
    return found


urlpatterns = [path("cost/probe/", probe), *routes(), path("", include("example.urls"))]
