"""A tiny collaboration platform that asks Stonetown before every action.

The platform keeps its own data (app settings, run results) in memory; who may do what is
decided by the model in ``schema/collaboration.zed``, served by ``stonetown serve``.

Run the demo against a server started with that schema::

    stonetown serve --port 50051 --datastore demo.db --schema schema/collaboration.zed &
    python examples/platform_service.py --endpoint 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import itertools
import sys
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Literal, cast

from stonetown import Client
from stonetown.client import ReadConsistency, parse_filter
from stonetown.core.errors import FailedPrecondition
from stonetown.engine.datastore import ChangeOp, Precondition, PreconditionOp

Level = Literal["run", "edit", "manage"]
LinkMode = Literal["shared", "restricted", "default"]
LinkResource = Literal["run", "build", "storage"]

#: The app relation that holds each grant level.
LEVEL_RELATIONS: dict[str, str] = {"run": "runner", "edit": "editor", "manage": "manager"}


class Forbidden(Exception):
    """Stonetown said no: ``user`` lacks ``permission`` on ``resource``."""

    def __init__(self, user: str, permission: str, resource: str) -> None:
        super().__init__(f"user:{user} may not {permission} {resource}")
        self.user = user
        self.permission = permission
        self.resource = resource


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """An open access request as the platform reads it back from Stonetown."""

    request_id: str
    app: str
    requester: str
    level: Level


@dataclass
class PlatformService:
    """The platform's handlers. Each one checks with Stonetown first, then acts.

    The client should be made with ``read_your_writes=True`` so every check made after a
    write by this service sees that write (the client passes the write's token along).
    """

    client: Client
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    _run_ids: Iterator[int] = field(default_factory=itertools.count)

    # ------------------------------------------------------------------ helpers

    def allowed(self, resource: str, permission: str, user: str) -> bool:
        """Does ``user:<user>`` have ``permission`` on ``resource`` (``type:id``)?"""
        return self.client.check(resource, permission, f"user:{user}").allowed

    def require(self, resource: str, permission: str, user: str) -> None:
        """Raise Forbidden unless the check passes."""
        if not self.allowed(resource, permission, user):
            raise Forbidden(user, permission, resource)

    # ------------------------------------------------------------------ accounts

    def create_organization(self, creator: str, org: str) -> str:
        """Create an organization owned by its creator. Fails (FailedPrecondition) if the
        organization already has an owner: there is exactly one."""
        no_owner_yet = Precondition(PreconditionOp.MUST_NOT_MATCH, parse_filter(f"organization:{org}#owner"))
        return self.client.write(
            create=[f"organization:{org}#owner@user:{creator}"], preconditions=[no_owner_yet]
        )

    def add_member(self, actor: str, org: str, user: str, role: Literal["member", "admin"] = "member") -> str:
        """Add a member (anyone who manages members) or an admin (the owner only)."""
        self.require(f"organization:{org}", "manage_admins" if role == "admin" else "manage_members", actor)
        return self.client.write(touch=[f"organization:{org}#{role}@user:{user}"])

    def remove_member(self, actor: str, org: str, user: str) -> str:
        """Remove a member or admin. The owner cannot be removed, only replaced by a transfer;
        removing an admin takes the owner."""
        self.require(f"organization:{org}", "manage_members", actor)
        rows = list(self.client.read(f"organization:{org}@user:{user}", consistency=_FRESH))
        if any(rel.relation == "owner" for rel in rows):
            raise Forbidden(actor, "remove the owner of", f"organization:{org}")
        if any(rel.relation == "admin" for rel in rows):
            self.require(f"organization:{org}", "manage_admins", actor)
        not_owner = Precondition(
            PreconditionOp.MUST_NOT_MATCH, parse_filter(f"organization:{org}#owner@user:{user}")
        )
        return self.client.write(delete=[str(rel) for rel in rows], preconditions=[not_owner])

    def define_role(self, actor: str, org: str, role: str, grants: tuple[Level, ...] = ()) -> str:
        """Define a custom role in an organization, with org-wide app capabilities."""
        self.require(f"organization:{org}", "manage_roles", actor)
        return self.client.write(
            touch=[
                f"organization:{org}#role@role:{role}",
                f"role:{role}#org@organization:{org}",
                *(f"role:{role}#grants_{level}@user:*" for level in grants),
            ]
        )

    def assign_role(self, actor: str, role: str, user: str) -> str:
        """Give a custom role to a user (it applies while they are a member)."""
        self.require(f"role:{role}", "administer", actor)
        return self.client.write(touch=[f"role:{role}#holder@user:{user}"])

    def set_account_default_link(self, actor: str, account: str, anyone_with_link: bool) -> str:
        """Switch an account's "general resource access": ``account`` is ``user:x`` (only x
        may change it) or ``organization:x`` (its owner and admins)."""
        if account.startswith("organization:"):
            self.require(account, "set_default_link", actor)
        elif account != f"user:{actor}":
            raise Forbidden(actor, "set_default_link", account)
        row = f"{account}#default_link@user:*"
        return self.client.write(touch=[row]) if anyone_with_link else self.client.write(delete=[row])

    # ------------------------------------------------------------------ apps

    def create_app(self, actor: str, app: str, org: str | None = None) -> str:
        """Create a personal app owned by ``actor``, or an app of ``org`` (its app managers)."""
        if org is None:
            no_owner = Precondition(PreconditionOp.MUST_NOT_MATCH, parse_filter(f"app:{app}#owner"))
            token = self.client.write(create=[f"app:{app}#owner@user:{actor}"], preconditions=[no_owner])
        else:
            self.require(f"organization:{org}", "manage_apps", actor)
            token = self.client.write(create=[f"app:{app}#org@organization:{org}"])
        self.settings[app] = {}
        return token

    def grant(self, actor: str, app: str, level: Level, subject: str) -> str:
        """Grant Can Run / Can Edit / Can Manage to ``subject`` (``user:x``, ``team:t#member``
        or ``role:r#member``)."""
        self.require(f"app:{app}", "manage_collaborators", actor)
        return self.client.write(touch=[f"app:{app}#{LEVEL_RELATIONS[level]}@{subject}"])

    def revoke(self, actor: str, app: str, level: Level, subject: str) -> str:
        """Remove one grant."""
        self.require(f"app:{app}", "manage_collaborators", actor)
        return self.client.write(delete=[f"app:{app}#{LEVEL_RELATIONS[level]}@{subject}"])

    def publish(self, actor: str, app: str) -> str:
        """Make the app visible and runnable by every user."""
        self.require(f"app:{app}", "manage", actor)
        return self.client.write(touch=[f"app:{app}#published@user:*"])

    def run_app(self, user: str, app: str) -> str:
        """Start a run of the app; return the run id."""
        self.require(f"app:{app}", "run", user)
        run_id = f"{app}-run-{next(self._run_ids)}"
        self.client.write(create=[f"run:{run_id}#app@app:{app}", f"run:{run_id}#started_by@user:{user}"])
        self.results[run_id] = f"results of {app} for {user}"
        return run_id

    def view_run(self, user: str, run_id: str) -> str:
        """The run's results, for whoever may see the run (also by link)."""
        self.require(f"run:{run_id}", "view", user)
        return self.results[run_id]

    def edit_app(self, user: str, app: str, **settings: str) -> dict[str, str]:
        """Change the app's workflow, commands or settings."""
        self.require(f"app:{app}", "edit", user)
        self.settings.setdefault(app, {}).update(settings)
        return self.settings[app]

    def view_logic(self, user: str, app: str) -> dict[str, str]:
        """The app's settings and logic: for editors, not for runners."""
        self.require(f"app:{app}", "view_logic", user)
        return dict(self.settings.get(app, {}))

    def delete_app(self, user: str, app: str) -> str:
        """Delete the app and every relationship on it."""
        self.require(f"app:{app}", "delete", user)
        self.settings.pop(app, None)
        return self.client.delete(f"app:{app}").token

    def transfer_ownership(self, actor: str, app: str, new_owner: str) -> str:
        """Hand a personal app to ``new_owner``; ``actor`` (the owner) keeps Can Manage.

        One atomic write whose precondition is that ``actor`` is still the owner: of two
        concurrent transfers by the same owner, the second fails with FailedPrecondition
        and changes nothing.
        """
        self.require(f"app:{app}", "transfer_ownership", actor)
        still_owner = Precondition(PreconditionOp.MUST_MATCH, parse_filter(f"app:{app}#owner@user:{actor}"))
        return self.client.write(
            delete=[f"app:{app}#owner@user:{actor}", f"app:{app}#manager@user:{new_owner}"],
            touch=[f"app:{app}#owner@user:{new_owner}", f"app:{app}#manager@user:{actor}"],
            preconditions=[still_owner],
        )

    def transfer_organization(self, actor: str, org: str, new_owner: str) -> str:
        """Hand an organization to one of its members; the old owner becomes an admin."""
        self.require(f"organization:{org}", "transfer_ownership", actor)
        self.require(f"organization:{org}", "is_member", new_owner)
        still_owner = Precondition(
            PreconditionOp.MUST_MATCH, parse_filter(f"organization:{org}#owner@user:{actor}")
        )
        return self.client.write(
            delete=[f"organization:{org}#owner@user:{actor}", f"organization:{org}#admin@user:{new_owner}"],
            touch=[f"organization:{org}#owner@user:{new_owner}", f"organization:{org}#admin@user:{actor}"],
            preconditions=[still_owner],
        )

    def visible_apps(self, user: str) -> list[str]:
        """Ids of the apps whose name and owner ``user`` may see."""
        return sorted(
            found.resource_id for found in self.client.lookup_resources("app", "view", f"user:{user}")
        )

    def managers(self, app: str) -> list[str]:
        """Ids of the users who can manage the app."""
        return sorted(
            found.subject.id for found in self.client.lookup_subjects(f"app:{app}", "manage", "user")
        )

    # ------------------------------------------------------------------ link sharing

    def set_link_sharing(self, actor: str, kind: LinkResource, resource_id: str, mode: LinkMode) -> str:
        """Per-resource link sharing: ``shared`` (anyone with the link), ``restricted``, or
        ``default`` (follow the account). One write sets one flag and clears the other."""
        resource = f"{kind}:{resource_id}"
        self.require(resource, "set_link", actor)
        shared, restricted = f"{resource}#link_shared@user:*", f"{resource}#link_restricted@user:*"
        if mode == "shared":
            return self.client.write(touch=[shared], delete=[restricted])
        if mode == "restricted":
            return self.client.write(touch=[restricted], delete=[shared])
        return self.client.write(delete=[shared, restricted])

    # ------------------------------------------------------------------ access requests

    def request_access(self, user: str, app: str, level: Level) -> str:
        """An organization member asks for a grant on an app of the organization; return the
        request id. The app's managers see it (e.g. on their Watch stream)."""
        self.require(f"app:{app}", "request_access", user)
        request_id = uuid.uuid4().hex[:12]
        self.client.write(
            create=[
                f"access_request:{request_id}#app@app:{app}",
                f"access_request:{request_id}#requester@user:{user}",
                f"access_request:{request_id}#level@access_level:{level}",
            ]
        )
        return request_id

    def read_request(self, request_id: str) -> AccessRequest:
        """The request's app, requester and level (FailedPrecondition if it is gone)."""
        parts = {
            rel.relation: rel.subject_id
            for rel in self.client.read(f"access_request:{request_id}", consistency=_FRESH)
        }
        level = parts.get("level")
        if set(parts) != {"app", "requester", "level"} or level not in ("run", "edit", "manage"):
            raise FailedPrecondition(f"access_request:{request_id} does not exist")
        return AccessRequest(request_id, parts["app"], parts["requester"], cast(Level, level))

    def pending_requests(self, manager: str) -> list[str]:
        """Ids of the open requests ``manager`` may decide."""
        found = self.client.lookup_resources("access_request", "approve", f"user:{manager}")
        return sorted(item.resource_id for item in found)

    def approve(self, manager: str, request_id: str) -> str:
        """Grant the requested level and remove the request, atomically: one write that
        touches the grant, deletes the request's rows, and requires that the request still
        exists (so a request approved or denied meanwhile is not approved again)."""
        request = self.read_request(request_id)
        self.require(f"access_request:{request_id}", "approve", manager)
        return self.client.write(
            touch=[f"app:{request.app}#{LEVEL_RELATIONS[request.level]}@user:{request.requester}"],
            delete=_request_rows(request),
            preconditions=[_request_exists(request)],
        )

    def deny(self, manager: str, request_id: str) -> str:
        """Remove the request without granting anything."""
        request = self.read_request(request_id)
        self.require(f"access_request:{request_id}", "deny", manager)
        return self.client.write(delete=_request_rows(request), preconditions=[_request_exists(request)])

    def watch_requests(self, manager: str, after: str | None = None) -> Generator[str, None, None]:
        """Endless: ids of new access requests that ``manager`` may decide, as they are made."""
        for event in self.client.watch(["access_request"], after=after):
            for change in event.changes:
                rel = change.relationship
                if change.op is ChangeOp.TOUCH and rel.relation == "requester":
                    at_event = ReadConsistency.at_least_as_fresh(event.token)
                    check = self.client.check(
                        f"access_request:{rel.resource_id}",
                        "approve",
                        f"user:{manager}",
                        consistency=at_event,
                    )
                    if check.allowed:
                        yield rel.resource_id


_FRESH = ReadConsistency.fully_consistent()


def _request_rows(request: AccessRequest) -> list[str]:
    prefix = f"access_request:{request.request_id}"
    return [
        f"{prefix}#app@app:{request.app}",
        f"{prefix}#requester@user:{request.requester}",
        f"{prefix}#level@access_level:{request.level}",
    ]


def _request_exists(request: AccessRequest) -> Precondition:
    return Precondition(
        PreconditionOp.MUST_MATCH,
        parse_filter(f"access_request:{request.request_id}#requester@user:{request.requester}"),
    )


def demo(endpoint: str) -> None:
    """A short story through every handler; raises AssertionError if Stonetown disagrees."""
    suffix = uuid.uuid4().hex[:6]
    org, scraper, tool = f"acme-{suffix}", f"scraper-{suffix}", f"tool-{suffix}"
    with Client(endpoint, read_your_writes=True) as client:
        svc = PlatformService(client)
        svc.create_organization("olivia", org)
        svc.add_member("olivia", org, "adam", role="admin")
        svc.add_member("adam", org, "mia")
        svc.add_member("adam", org, "fiona")
        svc.define_role("adam", org, f"finance-{suffix}", grants=("run",))
        svc.assign_role("adam", f"finance-{suffix}", "fiona")
        svc.create_app("adam", scraper, org=org)
        svc.grant("adam", scraper, "edit", "user:eve")
        svc.edit_app("eve", scraper, command="crawl --depth 2")
        run_id = svc.run_app("fiona", scraper)
        print(f"fiona ran {scraper}: {svc.view_run('fiona', run_id)}")
        _expect_forbidden(lambda: svc.edit_app("fiona", scraper, command="rm -rf"))
        _expect_forbidden(lambda: svc.view_logic("fiona", scraper))
        _expect_forbidden(lambda: svc.run_app("mia", scraper))
        assert scraper in svc.visible_apps("mia"), "members see every app of the organization"

        request_id = svc.request_access("mia", scraper, "run")
        assert request_id in svc.pending_requests("adam")
        token = svc.approve("adam", request_id)
        assert client.check(
            f"app:{scraper}", "run", "user:mia", consistency=ReadConsistency.at_least_as_fresh(token)
        ).allowed
        print(f"mia's request {request_id} approved; mia can run {scraper}")

        _expect_forbidden(lambda: svc.view_run("anonymous", run_id))
        svc.set_link_sharing("adam", "run", run_id, "shared")
        print(f"anyone with the link sees {run_id}: {svc.view_run('anonymous', run_id)}")
        svc.set_link_sharing("adam", "run", run_id, "restricted")
        _expect_forbidden(lambda: svc.view_run("anonymous", run_id))

        svc.create_app("ana", tool)
        svc.transfer_ownership("ana", tool, "bob")
        try:
            svc.transfer_ownership("ana", tool, "carl")
        except Forbidden:
            pass
        else:
            raise AssertionError("a former owner transferred the app")
        assert svc.allowed(f"app:{tool}", "manage", "ana") and not svc.allowed(f"app:{tool}", "own", "ana")
        print(f"{tool} now belongs to bob; ana keeps Can Manage; managers: {svc.managers(tool)}")
        _expect_forbidden(lambda: svc.remove_member("adam", org, "olivia"))
        print("demo: all checks behaved as the model says")


def _expect_forbidden(action: Callable[[], object]) -> None:
    try:
        action()
    except Forbidden as exc:
        print(f"denied as expected: {exc}")
    else:
        raise AssertionError("the action should have been forbidden")


def main(argv: list[str] | None = None) -> int:
    """Command line: run the demo against ``--endpoint``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="127.0.0.1:50051")
    demo(parser.parse_args(argv).endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
