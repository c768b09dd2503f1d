"""A real Pyramid application: pyramid_zodbconn and pyramid_tm on a federation's databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
from pyramid.config import Configurator
from pyramid_zodbconn import get_connection
from webtest import TestApp

import federation
from federation.databases import manager_of
from federation.pyramid import use_federation
from tests.models import Item
from tests.test_adapter_sqlite import make_member

CONFIG = """\
[members.main]
path = "main.fs"
create = true

[members.notes]
path = "notes.fs"
create = true
"""

#: The connections views used, to check after the request that they were closed.
SEEN: list[Any] = []


def add_page(request: Any) -> dict[str, Any]:
    """Create a page in the primary database."""
    conn = get_connection(request)
    SEEN.append(conn)
    page = Item(request.matchdict["name"])
    conn.add(page)
    conn.root()[page.title] = page
    return {"page": page.title}


def add_note(request: Any) -> dict[str, Any]:
    """Create a note in 'notes' that references a page of the primary database."""
    page = get_connection(request).root()[request.params["page"]]
    notes = get_connection(request, "notes")
    SEEN.append(notes)
    notes.root()[request.matchdict["name"]] = Item(request.params["text"], link=page)
    return {"ref": str(manager_of(notes).ref(page))}


def show_note(request: Any) -> dict[str, Any]:
    """Follow a note's reference to its page."""
    note = get_connection(request, "notes").root()[request.matchdict["name"]]
    same = note.link is get_connection(request).root()[note.link.title]
    return {"text": note.title, "page": note.link.title, "same": same}


def retitle_through_note(request: Any) -> dict[str, Any]:
    """Change the page a note references, reached through the note: a change in 'main'."""
    note = get_connection(request, "notes").root()[request.matchdict["name"]]
    page = note.link
    del get_connection(request).root()[page.title]
    page.title = request.params["title"]
    get_connection(request).root()[page.title] = page
    note.title = f"about {page.title}"  # and one in 'notes': both commit or neither
    return {"page": page.title}


def fail_after_writing(request: Any) -> None:
    """Write into both databases, then fail: pyramid_tm aborts."""
    page = get_connection(request).root()[request.params["page"]]
    page.title = "lost"
    get_connection(request, "notes").root()["lost"] = Item("lost", link=page)
    raise RuntimeError("the view failed")


def make_app(settings: dict[str, str]) -> Any:
    """The application: pyramid_tm, the federation's pyramid_zodbconn, five views."""
    with Configurator(settings=settings) as config:
        config.include("pyramid_tm")
        config.include("federation.pyramid")
        for name, path, view, method in [
            ("page", "/pages/{name}", add_page, "POST"),
            ("note", "/notes/{name}", add_note, "POST"),
            ("show", "/notes/{name}", show_note, "GET"),
            ("retitle", "/notes/{name}/retitle", retitle_through_note, "POST"),
            ("fail", "/fail", fail_after_writing, "POST"),
        ]:
            config.add_route(name, path, request_method=method)
            config.add_view(view, route_name=name, renderer="json")
        return config.make_wsgi_app()


@pytest.fixture(params=["thread", "explicit"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Settings naming a configuration of two members; pyramid_tm's default or explicit manager."""
    path = tmp_path / "federation.toml"
    path.write_text(CONFIG)
    settings = {"zodbconn.federation": str(path), "zodbconn.federation.primary": "main"}
    if request.param == "explicit":
        settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    return settings


@pytest.fixture
def app(settings: dict[str, str]) -> Iterator[TestApp]:
    """The application under WebTest; its federation is closed afterwards."""
    wsgi = make_app(settings)
    SEEN.clear()
    yield TestApp(wsgi)
    transaction.abort()
    wsgi.registry.zodb_federation.close()


def test_views_create_and_follow_cross_member_references(app, settings):
    """Views create a page and a note naming it, follow and change it; all survives a restart."""
    fed = app.app.registry.zodb_federation
    assert app.post("/pages/home").json == {"page": "home"}
    ref = app.post("/notes/n1", {"page": "home", "text": "hello"}).json["ref"]
    assert ref.startswith("main:integer:")  # '' is no member name: the primary's name is
    assert app.get("/notes/n1").json == {"text": "hello", "page": "home", "same": True}
    assert app.post("/notes/n1/retitle", {"title": "Home"}).json == {"page": "Home"}
    assert app.get("/notes/n1").json == {"text": "about Home", "page": "Home", "same": True}
    assert SEEN and all(conn.opened is None for conn in SEEN)  # closed with each request
    assert fed.databases.manager() is None
    assert fed._coordinators == {}  # every request's manager closed
    with fed.open() as conn:
        assert [stub.target.member for stub in conn.stubs("notes")] == ["main"]
    fed.close()
    restarted = TestApp(make_app(settings))
    try:
        assert restarted.get("/notes/n1").json == {
            "text": "about Home", "page": "Home", "same": True}
    finally:
        restarted.app.registry.zodb_federation.close()


def test_a_failing_view_writes_nothing(app):
    """A view that fails after writing into both members leaves both as they were."""
    app.post("/pages/home")
    app.post("/notes/n1", {"page": "home", "text": "hello"})
    with pytest.raises(RuntimeError, match="the view failed"):
        app.post("/fail", {"page": "home"})
    assert app.get("/notes/n1").json == {"text": "hello", "page": "home", "same": True}
    fed = app.app.registry.zodb_federation
    with fed.databases["notes"].transaction() as conn:
        assert "lost" not in conn.root()
    assert fed.databases.manager() is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "'zodbconn.federation' must name a federation configuration file"),
        ({"zodbconn.federation": "  "}, "must name a federation configuration file"),
        ({"zodbconn.federation": "{config}", "zodbconn.uri": "memory://"},
         "both 'zodbconn.uri' and 'zodbconn.federation'"),
        ({"zodbconn.federation": "{config}", "zodbconn.federation.primary": "nope"},
         "no member named 'nope'"),
        ({"zodbconn.federation": "{missing}"}, "Cannot read federation configuration"),
    ],
)
def test_bad_settings(tmp_path, settings, message):
    """Each bad setting is one FederationError sentence, and leaves no member open."""
    config = tmp_path / "federation.toml"
    config.write_text(CONFIG)
    names = {"config": str(config), "missing": str(tmp_path / "missing.toml")}
    settings = {key: value.format(**names) for key, value in settings.items()}
    with pytest.raises(federation.FederationError, match=message) as caught:
        make_app(settings)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")
    # nothing was left open: the files can be opened again
    federation.open({"main": (tmp_path / "main.fs").as_uri()}).close()


def test_a_foreign_primary_or_none_at_all(tmp_path):
    """use_federation() refuses a foreign primary, or a federation with no ZODB member."""
    people, _ = make_member(tmp_path, "people")
    registry = Configurator(settings={}).registry
    with federation.open({"main": (tmp_path / "main.fs").as_uri(), "people": people}) as fed:
        with pytest.raises(federation.FederationError, match="'people' is a foreign member"):
            use_federation(registry, fed, "people")
        use_federation(registry, fed)  # the first ZODB member by default
        assert registry._zodb_databases[""] is fed.databases["main"]
    alone, _ = make_member(tmp_path, "alone")
    with (federation.open({"alone": alone}) as fed,
          pytest.raises(federation.ConfigurationError, match="no ZODB member")):
        use_federation(registry, fed)
