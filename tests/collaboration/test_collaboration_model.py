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
    "owner": "olivia",  # owner (creator) of organization acme
    "admin": "adam",
    "app_owner": "sam",  # member of acme, App Owner of scraper, crawler and reporter
    "member": "mia",
    "role": "fiona",  # member holding acme's custom "finance" role (runs every app, edits none)
    "external": "eve",  # not a member; Can Edit on app:scraper only
    "outsider": "oscar",  # ran ana's published app in his own account
    "link": "anonymous",  # holds nothing but a resource's id
}
ALL = frozenset(ACTORS)
ADMINS = frozenset({"owner", "admin"})
OWNERS = frozenset({"owner", "app_owner"})
MANAGERS = ADMINS | {"app_owner"}
MEMBERS = MANAGERS | {"member", "role"}

#: (resource#permission, the kinds of user that have it). Everyone else must not.
#: The rule ids (A1..A15, B1..B18) are those of schema/README.md.
TABLE: list[tuple[str, frozenset[str]]] = [
    # B4 B5 B6 B7: owner everything; admin no delete / billing / admins; nobody removes the owner
    ("organization:acme#delete", frozenset({"owner"})),
    ("organization:acme#manage_billing", frozenset({"owner"})),
    ("organization:acme#manage_admins", frozenset({"owner"})),
    ("organization:acme#manage_members", ADMINS),
    ("organization:acme#manage_roles", ADMINS),
    ("organization:acme#set_default_link", ADMINS),
    ("organization:acme#is_member", MEMBERS),
    ("organization:acme#leave", MEMBERS - {"owner"}),
    # B10 B11 B12 B16 A14: an app with an external editor: Can Run ⊂ Can Edit ⊂ Can Manage ⊂ owner
    ("app:scraper#transfer_ownership", OWNERS),
    ("app:scraper#decide_requests", OWNERS),
    ("app:scraper#publish", MANAGERS),
    ("app:scraper#delete", MANAGERS),
    ("app:scraper#manage_collaborators", MANAGERS),
    ("app:scraper#edit", MANAGERS | {"external"}),
    ("app:scraper#view_logic", MANAGERS | {"external"}),
    ("app:scraper#run", MANAGERS | {"role", "external"}),
    # B1 B2 B13: members see every app and may ask; the external only the invited one, asks nothing
    ("app:scraper#view", MEMBERS | {"external"}),
    ("app:scraper#request_access", MEMBERS),
    ("app:reporter#view", MEMBERS),
    ("app:reporter#run", MANAGERS | {"role"}),
    ("app:reporter#edit", MANAGERS),
    # B10 A8: organization runs, builds and storages follow the app (acme's link default: restricted)
    ("run:scraper-1#view", MANAGERS | {"role", "external"}),
    ("run:scraper-1#abort", MANAGERS | {"role", "external"}),
    ("run:scraper-1#delete", MANAGERS),
    ("run:scraper-1#set_link", MANAGERS),
    ("build:scraper-b1#set_link", MANAGERS),
    ("build:scraper-b1#view", MANAGERS | {"external"}),
    ("build:scraper-b1#use", MANAGERS | {"role", "external"}),
    ("storage:acme-dataset#read", ADMINS | {"role"}),
    ("storage:acme-dataset#set_link", ADMINS),
    ("storage:scraper-1-output#read", MANAGERS | {"role", "external"}),
    # A4: a personal storage and a personal run are their account's alone
    ("storage:mia-notes#read", frozenset({"member"})),
    ("run:ana-tool-1#view", frozenset({"outsider"})),
    # A11 A12: per-resource "anyone with the link" over acme's restricted default
    ("run:scraper-2#view", ALL),
    ("storage:acme-shared#read", ALL),
    # A12: sam's and ana's personal defaults are "anyone with the link"; run:ana-2 overrides it
    ("storage:sam-kv#read", ALL),
    ("run:ana-1#view", ALL),
    ("run:ana-2#view", frozenset()),
    ("storage:ana-queue#read", frozenset()),
    # A14: a published app: every user sees and runs it, nobody else edits it
    ("app:ana-tool#run", ALL),
    ("app:ana-tool#edit", frozenset()),
    ("app:ana-private#view", frozenset()),
    # B13 B14 B15: access requests: the requester (mia) and who decides; the App Owner is notified
    ("access_request:req-1#view", OWNERS | {"member"}),
    ("access_request:req-1#approve", OWNERS),
    ("access_request:req-1#notified", frozenset({"app_owner"})),
]


@pytest.mark.parametrize(("target", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_permission_table(client: Client, acme: str, target: str, expected: frozenset[str]) -> None:
    """Who has `target`, among the eight kinds of user, over gRPC at the scenario's token."""
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
            f"app:{app}#account@organization:{org}",
            f"app:{app}#owner@user:own-{uid}",
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
    acme_apps = {"scraper", "crawler", "reporter", "handover"}
    assert _resources(client, "app", "view", "mia", acme) == acme_apps | published
    assert _resources(client, "app", "view", "eve", acme) == {"scraper"} | published
    assert _resources(client, "app", "run", "mia", acme) == published
    assert _resources(client, "app", "run", "fiona", acme) == acme_apps | published
    assert _resources(client, "app", "edit", "tess", acme) == {"crawler", "handover"}
    assert _resources(client, "app", "request_access", "eve", acme) == set()


def _subjects(client: Client, resource: str, permission: str, token: str) -> set[str]:
    found = client.lookup_subjects(
        resource, permission, "user", consistency=ReadConsistency.at_least_as_fresh(token)
    )
    return {str(item.subject) for item in found if not item.excluded}


def test_lookup_subjects_managers_and_runners(client: Client, acme: str) -> None:
    """LookupSubjects: who can manage, edit, run an app or approve a request."""
    assert _subjects(client, "app:scraper", "manage", acme) == {"user:olivia", "user:adam", "user:sam"}
    assert _subjects(client, "app:crawler", "edit", acme) == {
        "user:olivia",
        "user:adam",
        "user:sam",
        "user:tess",
    }
    # frank holds the finance role but is no member: the intersection leaves him out
    assert _subjects(client, "app:scraper", "run", acme) == {
        "user:olivia",
        "user:adam",
        "user:sam",
        "user:eve",
        "user:fiona",
        "user:rita",
    }
    assert _subjects(client, "access_request:req-1", "approve", acme) == {"user:olivia", "user:sam"}
    assert _subjects(client, "access_request:req-1", "notified", acme) == {"user:sam"}


def test_lookup_subjects_follows_new_manager_grant(client: Client, acme: str, uid: str) -> None:
    """LookupSubjects sees a new Can Manage grant to a team at the grant's token."""
    app = f"app:solo-{uid}"
    client.write(touch=[f"{app}#owner@user:ana-{uid}", f"{app}#account@user:ana-{uid}"])
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
            f"app:{app}#account@organization:{org}",
            f"app:{app}#owner@user:own-{uid}",
            f"run:{run}#account@organization:{org}",
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
            f"app:a-{uid}#account@user:ana-{uid}",
            f"run:{run}#account@user:ana-{uid}",
            f"run:{run}#started_by@user:ana-{uid}",
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
            f"app:a-{uid}#account@user:ana-{uid}",
            f"run:{run}#account@user:ana-{uid}",
            f"run:{run}#started_by@user:ana-{uid}",
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


# ---------------------------------------------------------------------------- accounts (A4, A12)


def test_organization_default_applies_to_organization_resources(client: Client, uid: str) -> None:
    """A12: a resource of an organization follows the organization's general resource access,
    never its creating member's personal one, and a member's personal resource follows theirs."""
    org, app, member = f"o-{uid}", f"a-{uid}", f"sam-{uid}"
    client.write(
        touch=[
            f"organization:{org}#owner@user:own-{uid}",
            f"organization:{org}#member@user:{member}",
            f"app:{app}#account@organization:{org}",
            f"app:{app}#owner@user:{member}",
            f"run:r-{uid}#account@organization:{org}",
            f"run:r-{uid}#app@app:{app}",
            f"run:r-{uid}#started_by@user:{member}",
            f"build:b-{uid}#app@app:{app}",
            f"storage:s-{uid}#account@organization:{org}",
            f"storage:s-{uid}#created_by@user:{member}",
            f"storage:p-{uid}#account@user:{member}",
            f"user:{member}#default_link@user:*",
        ]
    )
    anon = f"user:stranger-{uid}"

    def opens() -> tuple[bool, bool, bool, bool]:
        """Can a stranger with the ids read the org's run, build, storage, and the member's own?"""
        return (
            client.check(f"run:r-{uid}", "view", anon).allowed,
            client.check(f"build:b-{uid}", "view", anon).allowed,
            client.check(f"storage:s-{uid}", "read", anon).allowed,
            client.check(f"storage:p-{uid}", "read", anon).allowed,
        )

    assert opens() == (False, False, False, True)
    client.write(
        touch=[f"organization:{org}#default_link@user:*"], delete=[f"user:{member}#default_link@user:*"]
    )
    assert opens() == (True, True, True, False)


STARTER = ("account", "started_by")


def test_runs_belong_to_the_account_that_started_them(client: Client, uid: str) -> None:
    """A4: a run of another user's app, shared or published, is its starter's alone: the app's
    owner does not see it; it follows the starter's link default, not the app owner's."""
    ana, ivy, oscar, app = f"ana-{uid}", f"ivy-{uid}", f"oscar-{uid}", f"tool-{uid}"
    client.write(
        touch=[
            f"app:{app}#account@user:{ana}",
            f"app:{app}#owner@user:{ana}",
            f"app:{app}#published@user:*",
            f"app:{app}#runner@user:{ivy}",
            f"user:{ana}#default_link@user:*",
            *(f"run:{who}-{uid}#{rel}@user:{who}" for who in (ivy, oscar) for rel in STARTER),
        ]
    )
    for starter in (ivy, oscar):
        run = f"run:{starter}-{uid}"
        assert client.check(run, "view", f"user:{starter}").allowed
        assert client.check(run, "delete", f"user:{starter}").allowed
        assert not client.check(run, "view", f"user:{ana}").allowed
        assert not client.check(run, "view", f"user:stranger-{uid}").allowed
    assert not client.check(f"run:{ivy}-{uid}", "view", f"user:{oscar}").allowed
    # the starter shares it explicitly (A9): now ana reads it, and only reads
    client.write(touch=[f"run:{oscar}-{uid}#reader@user:{ana}"])
    assert client.check(f"run:{oscar}-{uid}", "view", f"user:{ana}").allowed
    assert not client.check(f"run:{oscar}-{uid}", "share", f"user:{ana}").allowed
