"""The collaboration model served by a real server: every rule per kind of user, listings,
link sharing, and the validation file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from collaboration_support import REPO, VALIDATION_FILE
from grpc_harness import ServerProcess

from stonetown import Client
from stonetown.client import CheckOutcome, ReadConsistency

FRESH = ReadConsistency.fully_consistent()

#: The kinds of user in the table below, and who plays each in collaboration.yaml.
ACTORS: dict[str, str] = {
    "owner": "olivia",  # owner of organization acme
    "admin": "adam",
    "member": "mia",
    "role": "fiona",  # member holding acme's custom "finance" role (runs every app, edits none)
    "external": "eve",  # not a member; Can Edit on app:scraper only
    "outsider": "oscar",
    "link": "anonymous",  # holds nothing but a resource's id
}
ALL = frozenset(ACTORS)
ADMINS = frozenset({"owner", "admin"})

#: (resource#permission, the kinds of user that have it). Everyone else must not.
TABLE: list[tuple[str, frozenset[str]]] = [
    # organization: owner everything; admin no delete / transfer / admins
    ("organization:acme#delete", frozenset({"owner"})),
    ("organization:acme#transfer_ownership", frozenset({"owner"})),
    ("organization:acme#manage_admins", frozenset({"owner"})),
    ("organization:acme#manage_members", ADMINS),
    ("organization:acme#set_default_link", ADMINS),
    ("organization:acme#is_member", ADMINS | {"member", "role"}),
    # an app with an external editor: Can Run ⊂ Can Edit ⊂ Can Manage ⊂ owner
    ("app:scraper#transfer_ownership", frozenset({"owner"})),
    ("app:scraper#delete", ADMINS),
    ("app:scraper#manage_collaborators", ADMINS),
    ("app:scraper#edit", ADMINS | {"external"}),
    ("app:scraper#view_logic", ADMINS | {"external"}),
    ("app:scraper#run", ADMINS | {"role", "external"}),
    ("app:scraper#view", ADMINS | {"member", "role", "external"}),
    # an app nobody was invited to: members see it, the finance role runs it, eve nothing
    ("app:reporter#view", ADMINS | {"member", "role"}),
    ("app:reporter#run", ADMINS | {"role"}),
    ("app:reporter#edit", ADMINS),
    ("app:reporter#request_access", ADMINS | {"member", "role"}),
    # runs, builds and storages inherit from the app (acme's link default: restricted)
    ("run:scraper-1#view", ADMINS | {"role", "external"}),
    ("run:scraper-1#abort", ADMINS | {"role", "external"}),
    ("run:scraper-1#delete", ADMINS),
    ("run:scraper-1#set_link", ADMINS),
    ("build:scraper-b1#set_link", ADMINS),
    ("build:scraper-b1#view", ADMINS | {"external"}),
    ("build:scraper-b1#use", ADMINS | {"role", "external"}),
    ("storage:acme-dataset#read", ADMINS | {"role"}),
    ("storage:acme-dataset#set_link", ADMINS),
    ("storage:scraper-1-output#read", ADMINS | {"role", "external"}),
    # per-resource "anyone with the link" over acme's restricted default
    ("run:scraper-2#view", ALL),
    ("storage:acme-shared#read", ALL),
    # ana's account default is "anyone with the link"; run:ana-2 overrides it to restricted
    ("run:ana-1#view", ALL),
    ("run:ana-2#view", frozenset()),
    ("storage:ana-queue#read", frozenset()),
    # a published app: every user sees and runs it, nobody else edits it
    ("app:ana-tool#run", ALL),
    ("app:ana-tool#edit", frozenset()),
    ("app:ana-private#view", frozenset()),
    # access requests: the requester (mia) and the app's managers
    ("access_request:req-1#view", ADMINS | {"member"}),
    ("access_request:req-1#approve", ADMINS),
]


@pytest.mark.parametrize(("target", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_permission_table(client: Client, acme: str, target: str, expected: frozenset[str]) -> None:
    """Who has `target`, among the seven kinds of user, over gRPC at the scenario's token."""
    resource, permission = target.split("#")
    checks = [(resource, permission, f"user:{name}") for name in ACTORS.values()]
    outcomes = client.check_bulk(checks, consistency=ReadConsistency.at_least_as_fresh(acme))
    answers = [item for item in outcomes if isinstance(item, CheckOutcome)]
    assert len(answers) == len(outcomes), outcomes
    allowed = {kind for kind, outcome in zip(ACTORS, answers, strict=True) if outcome.allowed}
    assert allowed == expected, f"{target}: missing {expected - allowed}, unexpected {allowed - expected}"


def test_every_rule_row_has_both_answers() -> None:
    """The table is not lopsided: it has rows every kind passes, and every kind is both
    allowed and denied somewhere."""
    for kind in ACTORS:
        answers = {kind in expected for _target, expected in TABLE}
        assert answers == {True, False}, kind


def test_role_applies_only_to_organization_members(client: Client, acme: str, uid: str) -> None:
    """A custom role's grants follow organization membership, not just the assignment."""
    fresh = ReadConsistency.at_least_as_fresh(acme)
    assert not client.check("app:scraper", "run", "user:frank", consistency=fresh).allowed
    holder = f"hal-{uid}"
    client.write(touch=[f"role:finance#holder@user:{holder}"])
    assert not client.check("app:reporter", "run", f"user:{holder}").allowed
    client.write(touch=[f"organization:acme#member@user:{holder}"])
    assert client.check("app:reporter", "run", f"user:{holder}").allowed
    assert not client.check("app:reporter", "edit", f"user:{holder}").allowed
    # leaving the organization drops the role's grants, the assignment stays
    client.write(delete=[f"organization:acme#member@user:{holder}"])
    assert not client.check("app:reporter", "run", f"user:{holder}").allowed
    assert [str(r) for r in client.read(f"role:finance#holder@user:{holder}", consistency=FRESH)] == [
        f"role:finance#holder@user:{holder}"
    ]


def test_team_grants_nest(client: Client, uid: str) -> None:
    """A grant to a team reaches members of teams nested in it."""
    org, app, outer, inner, user = f"o-{uid}", f"a-{uid}", f"outer-{uid}", f"inner-{uid}", f"u-{uid}"
    client.write(
        touch=[
            f"organization:{org}#owner@user:own-{uid}",
            f"app:{app}#org@organization:{org}",
            f"app:{app}#runner@team:{outer}#member",
            f"team:{outer}#member@team:{inner}#member",
        ]
    )
    assert not client.check(f"app:{app}", "run", f"user:{user}").allowed
    client.write(touch=[f"team:{inner}#member@user:{user}"])
    assert client.check(f"app:{app}", "run", f"user:{user}").allowed
    assert not client.check(f"app:{app}", "edit", f"user:{user}").allowed
    # an external collaborator through a team is still not an organization member
    assert not client.check(f"organization:{org}", "is_member", f"user:{user}").allowed


# ---------------------------------------------------------------------------- listings


def _resources(client: Client, kind: str, permission: str, user: str, token: str) -> set[str]:
    found = client.lookup_resources(
        kind, permission, f"user:{user}", consistency=ReadConsistency.at_least_as_fresh(token)
    )
    return {item.resource_id for item in found}


def test_lookup_resources_member_sees_every_org_app_external_only_invited(
    client: Client, acme: str, uid: str
) -> None:
    """LookupResources: a member lists every app of the organization, an external collaborator
    only the invited one."""
    # Published apps (of anyone, on this shared server) are visible to every user, so they
    # are what a brand-new user sees; everything beyond that comes from the model's rules.
    published = _resources(client, "app", "view", f"nobody-{uid}", acme)
    assert "ana-tool" in published
    assert _resources(client, "app", "view", "mia", acme) == {"scraper", "crawler", "reporter"} | published
    assert _resources(client, "app", "view", "eve", acme) == {"scraper"} | published
    assert _resources(client, "app", "run", "mia", acme) == published
    assert _resources(client, "app", "run", "fiona", acme) == {"scraper", "crawler", "reporter"} | published
    assert _resources(client, "app", "edit", "tess", acme) == {"crawler"}


def _subjects(client: Client, resource: str, permission: str, token: str) -> set[str]:
    found = client.lookup_subjects(
        resource, permission, "user", consistency=ReadConsistency.at_least_as_fresh(token)
    )
    return {str(item.subject) for item in found if not item.excluded}


def test_lookup_subjects_managers_and_runners(client: Client, acme: str) -> None:
    """LookupSubjects: who can manage, edit, run an app or approve a request."""
    assert _subjects(client, "app:scraper", "manage", acme) == {"user:olivia", "user:adam"}
    assert _subjects(client, "app:crawler", "edit", acme) == {"user:olivia", "user:adam", "user:tess"}
    # frank holds the finance role but is no member: the intersection leaves him out
    assert _subjects(client, "app:scraper", "run", acme) == {
        "user:olivia",
        "user:adam",
        "user:eve",
        "user:fiona",
        "user:rita",
    }
    assert _subjects(client, "access_request:req-1", "approve", acme) == {"user:olivia", "user:adam"}


def test_lookup_subjects_follows_new_manager_grant(client: Client, acme: str, uid: str) -> None:
    """LookupSubjects sees a new Can Manage grant to a team at the grant's token."""
    app = f"app:solo-{uid}"
    client.write(touch=[f"{app}#owner@user:ana-{uid}"])
    assert _subjects(client, app, "manage", acme) == {f"user:ana-{uid}"}
    token = client.write(
        touch=[f"{app}#manager@team:crew-{uid}#member", f"team:crew-{uid}#member@user:cy-{uid}"]
    )
    assert _subjects(client, app, "manage", token) == {f"user:ana-{uid}", f"user:cy-{uid}"}


# ---------------------------------------------------------------------------- link sharing


def test_link_sharing_per_resource_wins_both_ways(client: Client, uid: str) -> None:
    """Link sharing switched on and off per resource and account-wide: the per-resource setting
    wins in both directions, and a link never opens the app itself."""
    org, app, run, data = f"o-{uid}", f"a-{uid}", f"r-{uid}", f"s-{uid}"
    client.write(
        touch=[
            f"organization:{org}#owner@user:own-{uid}",
            f"app:{app}#org@organization:{org}",
            f"run:{run}#app@app:{app}",
            f"storage:{data}#produced_by@run:{run}",
        ]
    )
    anon = f"user:stranger-{uid}"
    shared, restricted = f"run:{run}#link_shared@user:*", f"run:{run}#link_restricted@user:*"
    account_default = f"organization:{org}#default_link@user:*"

    def opens() -> tuple[bool, bool, bool]:
        """Can a stranger with the ids read (the run, the storage, the app)?"""
        return (
            client.check(f"run:{run}", "view", anon).allowed,
            client.check(f"storage:{data}", "read", anon).allowed,
            client.check(f"app:{app}", "view", anon).allowed,
        )

    # account default restricted, no per-resource setting: closed
    assert opens() == (False, False, False)
    # per-resource "anyone with the link" beats the restricted default, for that resource only
    client.write(touch=[shared])
    assert opens() == (True, False, False)
    # account default switched to "anyone with the link": the storage follows it
    client.write(touch=[account_default])
    assert opens() == (True, True, False)
    # per-resource "restricted" beats the open default
    client.write(touch=[restricted], delete=[shared])
    assert opens() == (False, True, False)
    # back to the default (no per-resource setting): open again
    client.write(delete=[restricted])
    assert opens() == (True, True, False)
    # default back to restricted: all closed, and members of nothing still see nothing
    client.write(delete=[account_default])
    assert opens() == (False, False, False)
    # the storage's own setting beats the default too
    client.write(touch=[f"storage:{data}#link_shared@user:*"])
    assert opens() == (False, True, False)


def test_link_restricted_leaves_no_wildcard_in_lookup_subjects(client: Client, uid: str) -> None:
    """A restricted resource under an open account default yields no `user:*` subject."""
    run = f"r-{uid}"
    client.write(
        touch=[
            f"app:a-{uid}#owner@user:ana-{uid}",
            f"run:{run}#app@app:a-{uid}",
            f"user:ana-{uid}#default_link@user:*",
        ]
    )
    token = client.write(touch=[f"run:{run}#link_restricted@user:*"])
    consistency = ReadConsistency.at_least_as_fresh(token)
    found = list(client.lookup_subjects(f"run:{run}", "link_access", "user", consistency=consistency))
    assert [(str(item.subject), item.excluded) for item in found] == []
    token = client.write(delete=[f"run:{run}#link_restricted@user:*"])
    consistency = ReadConsistency.at_least_as_fresh(token)
    found = list(client.lookup_subjects(f"run:{run}", "link_access", "user", consistency=consistency))
    assert [(str(item.subject), item.excluded) for item in found] == [("user:*", ())]


def test_link_sharing_does_not_grant_more_than_read(client: Client, uid: str) -> None:
    """A link lets anyone read the run, not abort or delete it or run its app."""
    run = f"r-{uid}"
    client.write(
        touch=[
            f"app:a-{uid}#owner@user:ana-{uid}",
            f"run:{run}#app@app:a-{uid}",
            f"run:{run}#link_shared@user:*",
        ]
    )
    anon = f"user:stranger-{uid}"
    assert client.check(f"run:{run}", "view", anon).allowed
    assert not client.check(f"run:{run}", "abort", anon).allowed
    assert not client.check(f"run:{run}", "delete", anon).allowed
    assert not client.check(f"app:a-{uid}", "run", anon).allowed


# ---------------------------------------------------------------------------- validation file


def _stonetown() -> list[str]:
    script = Path(sys.executable).with_name("stonetown")
    if script.exists():
        return [str(script)]
    found = shutil.which("stonetown")
    return [found] if found else [sys.executable, "-m", "stonetown.cli.main"]


def test_validation_file_passes() -> None:
    """`stonetown validate schema/collaboration.yaml` exits 0."""
    result = subprocess.run(
        [*_stonetown(), "validate", "schema/collaboration.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all passed" in result.stdout + result.stderr


def test_validation_file_catches_a_wrong_rule(tmp_path: Path) -> None:
    """The same file with one assertion flipped (an admin deleting the org) fails."""
    text = VALIDATION_FILE.read_text().replace(
        "schemaFile: collaboration.zed", f"schemaFile: {VALIDATION_FILE.parent / 'collaboration.zed'}"
    )
    flipped = text.replace("    - organization:acme#delete@user:adam\n", "", 1).replace(
        "  assertTrue:\n", "  assertTrue:\n    - organization:acme#delete@user:adam\n", 1
    )
    assert flipped != text
    (tmp_path / "wrong.yaml").write_text(flipped)
    result = subprocess.run(
        [*_stonetown(), "validate", str(tmp_path / "wrong.yaml")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "organization:acme#delete@user:adam" in result.stdout + result.stderr


def test_server_serves_the_schema_file(server: ServerProcess, client: Client) -> None:
    """The server runs on exactly schema/collaboration.zed and logged no traceback."""
    assert client.read_schema().text.strip() == (REPO / "schema" / "collaboration.zed").read_text().strip()
    assert "Traceback" not in server.log()
