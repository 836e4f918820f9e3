"""The example platform service (examples/platform_service.py) against a real server: every
flow (organizations, apps, sharing, publishing, link settings, requests and approvals,
ownership transfer and its reversal, leaving an organization), each guarded by a Check, and
every flow that would break a rule refused with a clear error, writing nothing. Rule ids
(A1..A15, B1..B18) are those of schema/README.md."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from collaboration_support import EXAMPLE_FILE, REPO
from grpc_harness import ServerProcess

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import FailedPrecondition, StonetownError

FRESH = ReadConsistency.fully_consistent()


def _rows(client: Client) -> set[str]:
    return {str(rel) for rel in client.read(None, consistency=FRESH)}


def _acme(platform: ModuleType, client: Client, uid: str) -> tuple[Any, str, str]:
    """A service, an organization (olivia owner, adam admin, sam / mia / max members) and an
    app of it owned by sam, with eve invited as Can Edit; returns (service, org, app)."""
    svc = platform.PlatformService(client)
    org, app = f"org-{uid}", f"app-{uid}"
    svc.create_organization(f"olivia-{uid}", org)
    svc.add_member(f"olivia-{uid}", org, f"adam-{uid}", role="admin")
    for member in ("sam", "mia", "max"):
        svc.add_member(f"adam-{uid}", org, f"{member}-{uid}")
    svc.create_app(f"sam-{uid}", app, org=org)
    svc.grant(f"sam-{uid}", app, "edit", f"user:eve-{uid}")
    return svc, org, app


def test_platform_service_handlers(client: Client, platform: ModuleType, uid: str) -> None:
    """The handlers ask Stonetown and act (or refuse) as the model says."""
    Forbidden = platform.Forbidden
    svc, org, app = _acme(platform, client, uid)
    u = {name: f"{name}-{uid}" for name in ("olivia", "adam", "sam", "mia", "max", "eve", "ada")}
    with pytest.raises(Forbidden):
        svc.add_member(u["adam"], org, u["ada"], role="admin")  # B5: admins are the owner's
    with pytest.raises(Forbidden):
        svc.create_app(u["eve"], f"{app}-2", org=org)  # B2: externals create nothing there
    run_id = svc.run_app(u["eve"], app)
    assert svc.view_run(u["eve"], run_id).startswith("results of")
    assert svc.view_run(u["sam"], run_id)  # an organization run: the app's collaborators see it
    with pytest.raises(Forbidden):
        svc.run_app(u["mia"], app)  # B1: members see the name, not more
    assert svc.app_owner(u["mia"], app) == u["sam"]  # B1: ... and its owner
    with pytest.raises(Forbidden):
        svc.app_owner(f"nobody-{uid}", app)
    assert svc.visible_apps(u["eve"]) == sorted({app, *svc.visible_apps(f"nobody-{uid}")})
    svc.grant(u["sam"], app, "run", f"user:{u['max']}")
    with pytest.raises(Forbidden):
        svc.view_logic(u["max"], app)  # B10
    assert svc.edit_app(u["eve"], app, command="crawl") == {"command": "crawl"}  # B11
    with pytest.raises(Forbidden):
        svc.grant(u["eve"], app, "run", f"user:{u['mia']}")  # B12: editors do not add collaborators
    svc.grant(u["adam"], app, "manage", f"user:{u['mia']}")  # B6: admins manage every app
    svc.revoke(u["mia"], app, "run", f"user:{u['max']}")  # B12: a manager removes collaborators
    assert not svc.allowed(f"app:{app}", "run", u["max"])
    svc.delete_app(u["mia"], app)  # B12: ... or deletes the app
    assert not svc.allowed(f"app:{app}", "view", u["eve"])


def test_request_denied_or_withdrawn_grants_nothing(client: Client, platform: ModuleType, uid: str) -> None:
    """B13 B15: the App Owner denies one request, the requester withdraws another; neither
    grants anything, each is gone, and only the requester withdraws, only the owners decide."""
    svc, _org, app = _acme(platform, client, uid)
    mia, max_ = f"mia-{uid}", f"max-{uid}"
    denied = svc.request_access(mia, app, "edit")
    withdrawn = svc.request_access(max_, app, "run")
    assert svc.pending_requests(f"sam-{uid}") == sorted([denied, withdrawn])
    assert svc.pending_requests(f"olivia-{uid}") == sorted([denied, withdrawn])
    with pytest.raises(platform.Forbidden):
        svc.withdraw(mia, withdrawn)
    with pytest.raises(platform.Forbidden):
        svc.deny(mia, denied)
    svc.deny(f"sam-{uid}", denied)
    svc.withdraw(max_, withdrawn)
    assert svc.pending_requests(f"sam-{uid}") == []
    assert not svc.allowed(f"app:{app}", "edit", mia) and not svc.allowed(f"app:{app}", "run", max_)
    with pytest.raises(FailedPrecondition):
        svc.approve(f"sam-{uid}", denied)


def test_transfer_then_back_by_the_new_owner(client: Client, platform: ModuleType, uid: str) -> None:
    """B16 B17 B18: the App Owner transfers; the old owner is down to Can Manage and cannot take
    it back; the new owner can, and is then down to Can Manage. A personal app moves account."""
    svc = platform.PlatformService(client)
    ana, bob, tool = f"ana-{uid}", f"bob-{uid}", f"tool-{uid}"
    svc.create_app(ana, tool)
    svc.transfer_ownership(ana, tool, bob)
    assert svc.allowed(f"app:{tool}", "transfer_ownership", bob)
    assert svc.allowed(f"app:{tool}", "manage", ana) and not svc.allowed(f"app:{tool}", "own", ana)
    with pytest.raises(platform.Forbidden):
        svc.transfer_ownership(ana, tool, ana)  # irreversible for the old owner
    svc.transfer_ownership(bob, tool, ana)  # unless the new owner transfers it back
    assert svc.allowed(f"app:{tool}", "own", ana) and not svc.allowed(f"app:{tool}", "own", bob)
    assert svc.allowed(f"app:{tool}", "manage", bob)
    assert {str(rel) for rel in client.read(f"app:{tool}", consistency=FRESH)} == {
        f"app:{tool}#account@user:{ana}",
        f"app:{tool}#owner@user:{ana}",
        f"app:{tool}#manager@user:{bob}",
    }


def test_organization_app_transfers_to_members_only(client: Client, platform: ModuleType, uid: str) -> None:
    """B16 B5: an organization's app goes to another member only; the organization's owner can
    transfer a member's app (absolute control), downgrading that App Owner to Can Manage."""
    svc, org, app = _acme(platform, client, uid)
    before = _rows(client)
    with pytest.raises(platform.Refused, match="not a member"):
        svc.transfer_ownership(f"sam-{uid}", app, f"eve-{uid}")
    assert _rows(client) == before
    with pytest.raises(platform.Forbidden):
        svc.transfer_ownership(f"adam-{uid}", app, f"mia-{uid}")  # admins do not transfer
    svc.transfer_ownership(f"olivia-{uid}", app, f"mia-{uid}")
    assert svc.allowed(f"app:{app}", "transfer_ownership", f"mia-{uid}")
    assert svc.allowed(f"app:{app}", "manage", f"sam-{uid}")
    assert not svc.allowed(f"app:{app}", "decide_requests", f"sam-{uid}")
    assert svc.app_owner(f"max-{uid}", app) == f"mia-{uid}"


def _race(racers: tuple[str, str], platform: ModuleType, action: Callable[[Any], str]) -> list[object]:
    """Run `action(service)` twice at once, each service with a client of its own (to each of
    `racers`); the outcomes."""
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def attempt(address: str) -> None:
        """One attempt on its own channel, released together with the other."""
        with Client(address, read_your_writes=True) as own:
            svc = platform.PlatformService(own)
            barrier.wait()
            try:
                outcomes.append(action(svc))
            except (StonetownError, platform.Forbidden, platform.Refused) as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=attempt, args=(address,)) for address in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_approvals_grant_once(
    racers: tuple[str, str], client: Client, platform: ModuleType, uid: str
) -> None:
    """B15: the App Owner and the organization's owner approve the same request at once: one
    write commits, the other fails its precondition; the request is gone, the grant is there once."""
    svc, _org, app = _acme(platform, client, uid)
    request = svc.request_access(f"mia-{uid}", app, "edit")
    deciders = iter([f"sam-{uid}", f"olivia-{uid}"])
    lock = threading.Lock()

    def approve(own: Any) -> str:
        with lock:
            who = next(deciders)
        return str(own.approve(who, request))

    outcomes = _race(racers, platform, approve)
    assert sorted(type(o).__name__ for o in outcomes) == ["FailedPrecondition", "str"], outcomes
    assert list(client.read(f"access_request:{request}", consistency=FRESH)) == []
    assert [str(r) for r in client.read(f"app:{app}#editor@user:mia-{uid}", consistency=FRESH)] == [
        f"app:{app}#editor@user:mia-{uid}"
    ]


def test_concurrent_transfers_one_owner(
    racers: tuple[str, str], client: Client, platform: ModuleType, uid: str
) -> None:
    """B16: two transfers of one app at once (to two members): exactly one owner afterwards."""
    svc, _org, app = _acme(platform, client, uid)
    targets = iter([f"mia-{uid}", f"max-{uid}"])
    lock = threading.Lock()

    def transfer(own: Any) -> str:
        with lock:
            target = next(targets)
        return str(own.transfer_ownership(f"sam-{uid}", app, target))

    outcomes = _race(racers, platform, transfer)
    # the loser fails its precondition, or, if it came late, its check (sam owns nothing now)
    assert [type(o) for o in outcomes].count(str) == 1, outcomes
    assert any(isinstance(o, FailedPrecondition | platform.Forbidden) for o in outcomes), outcomes
    owners = [str(r) for r in client.read(f"app:{app}#owner", consistency=FRESH)]
    assert len(owners) == 1 and svc.allowed(f"app:{app}", "manage", f"sam-{uid}")


#: Flows that would break a rule: (label, the error it must raise); the calls are below.
BAD_FLOWS: list[tuple[str, str]] = [
    ("second organization owner", "FailedPrecondition"),
    ("approving twice", "FailedPrecondition"),
    ("admin removing the owner", "Refused"),
    ("external requesting access to an app", "Forbidden"),
    ("external requesting an app they cannot see", "Forbidden"),
    ("outsider requesting access", "Forbidden"),
    ("member requesting a level they have", "Refused"),
    ("transfer to a non-member", "Refused"),
    ("owner leaving", "Refused"),
    ("app owner leaving with apps", "Refused"),
    ("admin appointing an admin", "Forbidden"),
    ("admin removing an admin", "Forbidden"),
    ("manager deciding a request", "Forbidden"),
    ("second app with the same id", "FailedPrecondition"),
    ("grant without a level", "Refused"),
    ("reader sharing on", "Forbidden"),
]


@pytest.mark.parametrize(("label", "error"), BAD_FLOWS, ids=[label for label, _ in BAD_FLOWS])
def test_rule_breaking_flow_is_refused_and_writes_nothing(
    client: Client, platform: ModuleType, uid: str, label: str, error: str
) -> None:
    """Bad input: the flow raises a clear error and the store is exactly as before."""
    svc, org, app = _acme(platform, client, uid)
    u = {name: f"{name}-{uid}" for name in ("olivia", "adam", "ada", "sam", "mia", "max", "eve")}
    request = svc.request_access(u["mia"], app, "run")
    svc.approve(u["sam"], request)
    svc.grant(u["sam"], app, "manage", f"user:{u['max']}")
    run_id = svc.run_app(u["sam"], app)
    svc.share(u["sam"], "run", run_id, f"user:{u['eve']}")
    pending = svc.request_access(u["mia"], app, "edit")
    svc.add_member(u["olivia"], org, u["ada"], role="admin")
    hidden = f"hidden-{uid}"
    svc.create_app(u["sam"], hidden, org=org)
    assert not svc.allowed(f"app:{hidden}", "view", u["eve"])
    calls: dict[str, Callable[[], object]] = {
        "second organization owner": lambda: svc.create_organization(u["mia"], org),
        "approving twice": lambda: svc.approve(u["sam"], request),
        "admin removing the owner": lambda: svc.remove_member(u["adam"], org, u["olivia"]),
        "external requesting access to an app": lambda: svc.request_access(u["eve"], app, "manage"),
        "external requesting an app they cannot see": lambda: svc.request_access(u["eve"], hidden, "run"),
        "outsider requesting access": lambda: svc.request_access(f"oscar-{uid}", app, "run"),
        "member requesting a level they have": lambda: svc.request_access(u["mia"], app, "run"),
        "transfer to a non-member": lambda: svc.transfer_ownership(u["sam"], app, u["eve"]),
        "owner leaving": lambda: svc.leave_organization(u["olivia"], org),
        "app owner leaving with apps": lambda: svc.leave_organization(u["sam"], org),
        "admin appointing an admin": lambda: svc.add_member(u["adam"], org, u["mia"], role="admin"),
        "admin removing an admin": lambda: svc.remove_member(u["adam"], org, u["ada"]),
        "manager deciding a request": lambda: svc.deny(u["max"], pending),
        "second app with the same id": lambda: svc.create_app(u["mia"], app, org=org),
        "grant without a level": lambda: svc.grant(u["sam"], app, "owner", f"user:{u['mia']}"),
        "reader sharing on": lambda: svc.share(u["eve"], "run", run_id, f"user:{u['mia']}"),
    }
    before = _rows(client)
    errors = {"Forbidden": platform.Forbidden, "Refused": platform.Refused}
    errors["FailedPrecondition"] = FailedPrecondition
    with pytest.raises(errors[error]) as caught:
        calls[label]()
    assert str(caught.value), "the error says what was refused"
    assert _rows(client) == before


def test_leaving_keeps_only_direct_invitations(client: Client, platform: ModuleType, uid: str) -> None:
    """B2 B8: a member who leaves no longer sees the organization's apps, loses role grants, may
    no longer request access, and keeps the apps they were invited to, as an external collaborator."""
    svc, org, app = _acme(platform, client, uid)
    other = f"other-{uid}"
    svc.create_app(f"sam-{uid}", other, org=org)
    svc.define_role(f"adam-{uid}", org, f"ops-{uid}", grants=("run",))
    svc.assign_role(f"adam-{uid}", f"ops-{uid}", f"mia-{uid}")
    svc.grant(f"sam-{uid}", app, "run", f"user:mia-{uid}")
    assert svc.allowed(f"app:{other}", "run", f"mia-{uid}")
    svc.leave_organization(f"mia-{uid}", org)
    assert not svc.allowed(f"app:{other}", "view", f"mia-{uid}")
    assert svc.allowed(f"app:{app}", "run", f"mia-{uid}") and svc.allowed(f"app:{app}", "view", f"mia-{uid}")
    assert not svc.allowed(f"app:{app}", "request_access", f"mia-{uid}")
    # sam owns apps there: first transfer them, then leave
    svc.transfer_ownership(f"sam-{uid}", app, f"max-{uid}")
    svc.transfer_ownership(f"sam-{uid}", other, f"max-{uid}")
    svc.leave_organization(f"sam-{uid}", org)
    assert svc.allowed(f"app:{app}", "manage", f"sam-{uid}")  # the downgrade grant stays: external now
    assert not svc.allowed(f"organization:{org}", "is_member", f"sam-{uid}")
    svc.remove_member(f"olivia-{uid}", org, f"adam-{uid}")  # the owner removes an admin
    assert not svc.allowed(f"app:{app}", "manage", f"adam-{uid}")


def test_publish_share_and_link_settings(client: Client, platform: ModuleType, uid: str) -> None:
    """A14 A4 A9 A11 A12: publishing opens run and sight to every user (each run its starter's);
    runs and storages are shared by invitation or by link; account defaults and per-resource
    settings, switched through the service, decide what a link opens."""
    svc = platform.PlatformService(client)
    ana, oscar, bob, stranger = f"ana-{uid}", f"oscar-{uid}", f"bob-{uid}", f"stranger-{uid}"
    tool = f"tool-{uid}"
    svc.create_app(ana, tool)
    with pytest.raises(platform.Forbidden):
        svc.run_app(oscar, tool)
    with pytest.raises(platform.Forbidden):
        svc.publish(oscar, tool)
    svc.publish(ana, tool)
    run_id = svc.run_app(oscar, tool)
    assert svc.view_run(oscar, run_id)
    with pytest.raises(platform.Forbidden):
        svc.view_run(ana, run_id)
    with pytest.raises(platform.Forbidden):
        svc.view_logic(oscar, tool)
    svc.share(oscar, "run", run_id, f"user:{ana}")
    assert svc.view_run(ana, run_id)
    # storages: personal, shared with a teammate to read or to write
    data = f"data-{uid}"
    svc.create_storage(ana, data)
    assert not svc.allowed(f"storage:{data}", "read", bob)
    svc.share(ana, "storage", data, f"user:{bob}")
    assert svc.allowed(f"storage:{data}", "read", bob) and not svc.allowed(f"storage:{data}", "write", bob)
    svc.share(ana, "storage", data, f"user:{bob}", relation="writer")
    assert svc.allowed(f"storage:{data}", "write", bob)
    # link settings: the personal account default, overridden per resource both ways
    assert not svc.allowed(f"storage:{data}", "read", stranger)
    svc.set_account_default_link(ana, f"user:{ana}", True)
    assert svc.allowed(f"storage:{data}", "read", stranger)
    assert not svc.allowed(f"run:{run_id}", "view", stranger)  # oscar's run follows oscar's default
    svc.set_link_sharing(ana, "storage", data, "restricted")
    assert not svc.allowed(f"storage:{data}", "read", stranger)
    svc.set_link_sharing(ana, "storage", data, "default")
    assert svc.allowed(f"storage:{data}", "read", stranger)
    with pytest.raises(platform.Forbidden):
        svc.set_account_default_link(bob, f"user:{ana}", False)
    with pytest.raises(platform.Forbidden):
        svc.set_link_sharing(bob, "storage", data, "shared")
    svc.set_link_sharing(oscar, "run", run_id, "shared")
    assert svc.view_run(stranger, run_id)
    assert not svc.allowed(f"app:{tool}", "edit", stranger)


def test_organization_link_settings(client: Client, platform: ModuleType, uid: str) -> None:
    """A12 B6: the organization's owner and admins switch its general resource access; its runs
    follow it unless the run has its own setting."""
    svc, org, app = _acme(platform, client, uid)
    run_id = svc.run_app(f"sam-{uid}", app)
    stranger = f"stranger-{uid}"
    with pytest.raises(platform.Forbidden):
        svc.set_account_default_link(f"mia-{uid}", f"organization:{org}", True)
    svc.set_account_default_link(f"adam-{uid}", f"organization:{org}", True)
    assert svc.view_run(stranger, run_id)
    svc.set_link_sharing(f"sam-{uid}", "run", run_id, "restricted")
    with pytest.raises(platform.Forbidden):
        svc.view_run(stranger, run_id)
    svc.set_account_default_link(f"olivia-{uid}", f"organization:{org}", False)
    svc.set_link_sharing(f"sam-{uid}", "run", run_id, "shared")
    assert svc.view_run(stranger, run_id)


def test_platform_service_notifications_only_for_the_app_owner(
    private_server: ServerProcess, platform: ModuleType, uid: str
) -> None:
    """B14: the App Owner's notification stream skips requests on other owners' apps."""
    with Client(private_server.address, read_your_writes=True) as client:
        svc, _org, app = _acme(platform, client, uid)
        token = client.write(touch=[f"organization:org-{uid}#member@user:mia-{uid}"])
        other_svc, _other_org, other_app = _acme(platform, client, f"{uid}x")
        # a request on another organization's app comes first: sam must not be shown it
        foreign = other_svc.request_access(f"mia-{uid}x", other_app, "run")
        mine = svc.request_access(f"mia-{uid}", app, "run")
        stream = svc.notifications(f"sam-{uid}", after=token)
        assert next(stream) == mine
        assert svc.pending_requests(f"sam-{uid}") == [mine]
        assert svc.pending_requests(f"sam-{uid}x") == [foreign]
        assert svc.pending_requests(f"adam-{uid}") == []
        stream.close()  # last: see `private_server`


def test_platform_service_demo_runs_against_the_server(private_server: ServerProcess) -> None:
    """`python examples/platform_service.py --endpoint ...` runs its story and exits 0."""
    # A server of its own: the demo's cast (olivia, mia, ...) would meet collaboration.yaml's.
    result = subprocess.run(
        [sys.executable, str(EXAMPLE_FILE), "--endpoint", private_server.address],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: all checks behaved as the model says" in result.stdout
