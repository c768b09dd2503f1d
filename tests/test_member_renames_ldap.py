"""An LDAP member renamed in the configuration: its id comes from the setting member_id."""

from __future__ import annotations

import pytest
import transaction

import federation
from tests.ldap_helpers import (  # noqa: F401 - fixture ou
    directory,
    ou_fixture,
    people_entries,
    raw_entry,
    seeder,
)
from tests.models import Item

pytestmark = pytest.mark.server


def test_renamed_directory_keeps_its_stubs_and_entries_keep_their_references(
        slapd_server, ou, tmp_path):
    """Stubs into the directory name it by the configured id; an entry's reference names
    main by its catalog id: both survive renaming both members."""
    seeder(slapd_server, ou)(1, {"name": "Ada"})
    dn = f"uid=p1,{ou}"
    main_uri = (tmp_path / "main.fs").as_uri()

    def people(name):
        return {"adapter": directory(slapd_server, name, people_entries(ou)),
                "member_id": "people-directory"}

    with federation.open({"main": main_uri, "people": people("people")}) as fed, \
            fed.open() as conn:
        assert fed.member("people").member_id == "people-directory"
        ada = conn.get(federation.Ref("people", "dn", dn))
        home = Item("home")
        conn.add(home, "main")
        conn.root("main")["ada"] = Item("Ada's", link=ada)
        ada.owner = home
        transaction.commit()
        main_id = fed.member("main").member_id
    [text] = raw_entry(slapd_server, dn, "description")["description"]
    assert text.decode().startswith(f"main@{main_id}:integer:")
    with federation.open({"site": main_uri, "staff": people("staff")}) as fed, \
            fed.open() as conn:
        ada = conn.root("site")["ada"].link
        assert ada.name == "Ada" and conn.ref(ada) == federation.Ref("staff", "dn", dn)
        assert ada.owner.title == "home" and conn.ref(ada.owner).member == "site"
        assert [stub.target.member for stub in conn.stubs("site")] == ["staff"]
        transaction.abort()
