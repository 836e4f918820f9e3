"""A tiny collaboration platform that asks Stonetown before every action.

The platform keeps its own data (app settings, run results) in memory; who may do what is
decided by the model in ``schema/collaboration.zed``, served by ``stonetown serve``. Every
handler checks first, and every write that a concurrent one could turn into a broken rule
(a second owner, a request approved twice, an owner removed) carries preconditions, so the
store refuses it (FailedPrecondition) and writes nothing. schema/README.md maps each rule
of the product documents to the model and to these handlers.

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
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import ChangeOp, Precondition, PreconditionOp

Level = Literal["run", "edit", "manage"]
LinkMode = Literal["shared", "restricted", "default"]
SharedKind = Literal["run", "build", "storage"]

#: The app relation that holds each grant level.
LEVEL_RELATIONS: dict[str, str] = {"run": "runner", "edit": "editor", "manage": "manager"}
#: The permission each grant level gives on an app.
LEVEL_PERMISSIONS: dict[str, str] = {"run": "view_results", "edit": "edit", "manage": "manage"}


class Forbidden(Exception):
    """Stonetown said no: ``user`` lacks ``permission`` on ``resource``."""

    def __init__(self, user: str, permission: str, resource: str) -> None:
        super().__init__(f"user:{user} may not {permission} {resource}")
        self.user = user
        self.permission = permission
        self.resource = resource


class Refused(Exception):
    """The action would break a rule of the model whatever the caller's permissions (e.g. the
    owner leaving the organization); nothing was written."""


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """An open access request as the platform reads it back from Stonetown."""

    request_id: str
    app: str
    requester: str
    level: Level


def _must(op: PreconditionOp, filter_text: str) -> Precondition:
    return Precondition(op, parse_filter(filter_text))


def _exists(filter_text: str) -> Precondition:
    """Precondition: a relationship matching ``filter_text`` exists when the write commits."""
    return _must(PreconditionOp.MUST_MATCH, filter_text)


def _absent(filter_text: str) -> Precondition:
    """Precondition: no relationship matches ``filter_text`` when the write commits."""
    return _must(PreconditionOp.MUST_NOT_MATCH, filter_text)


_FRESH = ReadConsistency.fully_consistent()


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

    def _subject_of(self, resource: str, relation: str) -> str | None:
        """The one subject (``type:id``) of ``resource#relation``, fully consistent."""
        found = [f"{rel.subject_type}:{rel.subject_id}" for rel in self._read(f"{resource}#{relation}")]
        return found[0] if found else None

    def _read(self, filter_text: str) -> list[Relationship]:
        return list(self.client.read(filter_text, consistency=_FRESH))

    # ------------------------------------------------------------------ organizations

    def create_organization(self, creator: str, org: str) -> str:
        """Create an organization owned by its creator. Fails (FailedPrecondition) if the
        organization already has an owner: there is exactly one."""
        owner = f"organization:{org}#owner"
        return self.client.write(create=[f"{owner}@user:{creator}"], preconditions=[_absent(owner)])

    def add_member(self, actor: str, org: str, user: str, role: Literal["member", "admin"] = "member") -> str:
        """Invite a member (owner and admins) or appoint an admin (the owner only)."""
        self.require(f"organization:{org}", "manage_admins" if role == "admin" else "manage_members", actor)
        if self.allowed(f"organization:{org}", "delete", user):
            raise Refused(f"user:{user} owns organization:{org}; the owner is not given another role")
        return self.client.write(touch=[f"organization:{org}#{role}@user:{user}"])

    def remove_member(self, actor: str, org: str, user: str) -> str:
        """Remove a member (owner and admins) or an admin (the owner). Nobody removes the owner."""
        self.require(f"organization:{org}", "manage_members", actor)
        may_remove_admins = self.allowed(f"organization:{org}", "manage_admins", actor)
        return self._drop_membership(org, user, actor if not may_remove_admins else None)

    def leave_organization(self, user: str, org: str) -> str:
        """A member or admin leaves; the owner cannot. Direct invitations to the
        organization's apps stay: the leaver becomes an external collaborator on those."""
        if not self.allowed(f"organization:{org}", "leave", user):
            raise Refused(f"user:{user} cannot leave organization:{org}: not a direct member, or its owner")
        return self._drop_membership(org, user)

    def _drop_membership(self, org: str, user: str, not_admins_for: str | None = None) -> str:
        """Delete the user's member/admin rows, never the owner's, never while they still own
        an app of the organization (an App Owner must be a member), and, when removed by
        ``not_admins_for`` (an actor who may not remove admins), never an admin's."""
        rows = self._read(f"organization:{org}@user:{user}")
        if any(rel.relation == "owner" for rel in rows):
            raise Refused(f"user:{user} is the owner of organization:{org} and cannot be removed")
        if not_admins_for is not None and any(rel.relation == "admin" for rel in rows):
            raise Forbidden(not_admins_for, "manage_admins", f"organization:{org}")
        apps = [rel.resource_id for rel in self._read(f"app#owner@user:{user}")]
        owned_here = [a for a in apps if self._subject_of(f"app:{a}", "account") == f"organization:{org}"]
        if owned_here:
            raise Refused(f"user:{user} owns {sorted(owned_here)} in organization:{org}: transfer them first")
        if not rows:
            raise Refused(f"user:{user} is not a direct member of organization:{org}")
        # Still not the owner when the write commits; and, for the usual case of a user owning
        # no app, still owning none (a transfer to them meanwhile makes this write fail).
        guards = [_absent(f"organization:{org}#owner@user:{user}")]
        if not_admins_for is not None:  # not made an admin meanwhile
            guards.append(_absent(f"organization:{org}#admin@user:{user}"))
        if not apps:
            guards.append(_absent(f"app#owner@user:{user}"))
        return self.client.write(delete=[str(rel) for rel in rows], preconditions=guards)

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
        """Create an app owned by ``actor``: in their personal account, or in ``org`` (its
        members create apps there). Exactly one owner: the id must be unused."""
        account = f"user:{actor}" if org is None else f"organization:{org}"
        if org is not None:
            self.require(account, "create_apps", actor)
        token = self.client.write(
            create=[f"app:{app}#account@{account}", f"app:{app}#owner@user:{actor}"],
            preconditions=[_absent(f"app:{app}#owner"), _absent(f"app:{app}#account")],
        )
        self.settings[app] = {}
        return token

    def grant(self, actor: str, app: str, level: Level, subject: str) -> str:
        """Grant Can Run / Can Edit / Can Manage to ``subject`` (``user:x``, ``team:t#member``
        or ``role:r#member``). The level is required: there is no grant without one."""
        if level not in LEVEL_RELATIONS:
            raise Refused(f"unknown level {level!r}: choose run, edit or manage")
        self.require(f"app:{app}", "manage_collaborators", actor)
        return self.client.write(touch=[f"app:{app}#{LEVEL_RELATIONS[level]}@{subject}"])

    def revoke(self, actor: str, app: str, level: Level, subject: str) -> str:
        """Remove one grant (never the ownership: that only moves by a transfer)."""
        self.require(f"app:{app}", "manage_collaborators", actor)
        return self.client.write(delete=[f"app:{app}#{LEVEL_RELATIONS[level]}@{subject}"])

    def publish(self, actor: str, app: str, published: bool = True) -> str:
        """Publish the app in the store (every user sees and runs it), or withdraw it."""
        self.require(f"app:{app}", "publish", actor)
        row = f"app:{app}#published@user:*"
        return self.client.write(touch=[row]) if published else self.client.write(delete=[row])

    def run_app(self, user: str, app: str) -> str:
        """Start a run; return its id. A run of an organization's app belongs to the
        organization; any other run (one's own app, another user's, a published one) to the
        starter's personal account, and only they see it."""
        self.require(f"app:{app}", "run", user)
        run_id = f"{app}-run-{next(self._run_ids)}"
        account = self._subject_of(f"app:{app}", "account") or ""
        rows = [f"run:{run_id}#started_by@user:{user}"]
        if account.startswith("organization:"):
            rows += [f"run:{run_id}#account@{account}", f"run:{run_id}#app@app:{app}"]
        else:
            rows.append(f"run:{run_id}#account@user:{user}")
        self.client.write(create=rows, preconditions=[_exists(f"app:{app}#owner")])
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

    def visible_apps(self, user: str) -> list[str]:
        """Ids of the apps whose name and owner ``user`` may see (a member: the organization's list)."""
        return sorted(
            found.resource_id for found in self.client.lookup_resources("app", "view", f"user:{user}")
        )

    def app_owner(self, user: str, app: str) -> str:
        """The App Owner's id, for whoever may see the app's name and owner."""
        self.require(f"app:{app}", "view", user)
        return (self._subject_of(f"app:{app}", "owner") or ":").split(":", 1)[1]

    def transfer_ownership(self, actor: str, app: str, new_owner: str) -> str:
        """Hand the app to ``new_owner``; the previous App Owner is downgraded to Can Manage.

        The App Owner (or the organization's owner) transfers; an organization's app only to
        a member. One atomic write whose precondition is that the previous owner still owns
        the app: of two concurrent transfers, the second fails with FailedPrecondition and
        changes nothing. The new owner can transfer it back the same way.
        """
        self.require(f"app:{app}", "transfer_ownership", actor)
        previous = (self._subject_of(f"app:{app}", "owner") or ":").split(":", 1)[1]
        if previous == new_owner:
            raise Refused(f"user:{new_owner} already owns app:{app}")
        account = self._subject_of(f"app:{app}", "account") or ""
        personal = account.startswith("user:")
        if not personal and not self.allowed(f"app:{app}", "receive_ownership", new_owner):
            raise Refused(f"user:{new_owner} is not a member of {account}: an app is transferred to a member")
        delete = [f"app:{app}#owner@user:{previous}", f"app:{app}#manager@user:{new_owner}"]
        touch = [f"app:{app}#owner@user:{new_owner}", f"app:{app}#manager@user:{previous}"]
        guards = [_exists(f"app:{app}#owner@user:{previous}")]
        if personal:  # the app moves to the new owner's personal account
            delete.append(f"app:{app}#account@user:{previous}")
            touch.append(f"app:{app}#account@user:{new_owner}")
        elif self._read(f"{account}@user:{new_owner}"):  # still a member when the write commits
            guards.append(_exists(f"{account}@user:{new_owner}"))
        return self.client.write(delete=delete, touch=touch, preconditions=guards)

    # ------------------------------------------------------------------ runs, builds, storages

    def create_storage(self, actor: str, storage: str, org: str | None = None) -> str:
        """Create a dataset / key-value store / request queue in ``actor``'s personal account,
        or in ``org`` (a member creates it there; the org's owner and admins manage it too)."""
        if org is None:
            rows = [f"storage:{storage}#account@user:{actor}"]
        else:
            self.require(f"organization:{org}", "is_member", actor)
            rows = [
                f"storage:{storage}#account@organization:{org}",
                f"storage:{storage}#created_by@user:{actor}",
            ]
        return self.client.write(create=rows, preconditions=[_absent(f"storage:{storage}#account")])

    def share(
        self, actor: str, kind: SharedKind, resource_id: str, subject: str, relation: str = "reader"
    ) -> str:
        """Invite ``subject`` to a run, build or storage (``reader``; storages also ``writer``)."""
        if relation not in ("reader", "writer") or (relation == "writer" and kind != "storage"):
            raise Refused(f"{kind} has no {relation!r} invitation")
        self.require(f"{kind}:{resource_id}", "share", actor)
        return self.client.write(touch=[f"{kind}:{resource_id}#{relation}@{subject}"])

    def set_link_sharing(self, actor: str, kind: SharedKind, resource_id: str, mode: LinkMode) -> str:
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
        """A member of the app's organization asks for a grant; return the request id. The
        App Owner is notified (:meth:`notifications`). Refused for anyone who cannot browse
        the organization's apps (external collaborators, outsiders) and for a level the user
        already has."""
        self.require(f"app:{app}", "request_access", user)
        if self.allowed(f"app:{app}", LEVEL_PERMISSIONS[level], user):
            raise Refused(f"user:{user} already has {level} on app:{app}")
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
        parts = {rel.relation: rel.subject_id for rel in self._read(f"access_request:{request_id}")}
        level = parts.get("level")
        if set(parts) != {"app", "requester", "level"} or level not in LEVEL_RELATIONS:
            raise FailedPrecondition(f"access_request:{request_id} does not exist")
        return AccessRequest(request_id, parts["app"], parts["requester"], cast(Level, level))

    def _decidable(self, request_id: str, permission: str, user: str) -> AccessRequest:
        """The open request, once ``user`` may ``permission`` it. A request decided meanwhile
        (its rows gone, so the check fails too) is reported as such: FailedPrecondition."""
        request = self.read_request(request_id)
        if not self.allowed(f"access_request:{request_id}", permission, user):
            self.read_request(request_id)  # raises FailedPrecondition if it was decided meanwhile
            raise Forbidden(user, permission, f"access_request:{request_id}")
        return request

    def pending_requests(self, owner: str) -> list[str]:
        """Ids of the open requests ``owner`` may decide."""
        found = self.client.lookup_resources("access_request", "decide", f"user:{owner}")
        return sorted(item.resource_id for item in found)

    def approve(self, owner: str, request_id: str) -> str:
        """Grant the requested level and remove the request, atomically: one write that
        touches the grant, deletes the request's rows, and requires that the request still
        exists (so a request approved or denied meanwhile is not approved again)."""
        request = self._decidable(request_id, "approve", owner)
        return self.client.write(
            touch=[f"app:{request.app}#{LEVEL_RELATIONS[request.level]}@user:{request.requester}"],
            delete=_request_rows(request),
            preconditions=[_request_exists(request)],
        )

    def deny(self, owner: str, request_id: str) -> str:
        """Remove the request without granting anything (once: same precondition)."""
        request = self._decidable(request_id, "deny", owner)
        return self.client.write(delete=_request_rows(request), preconditions=[_request_exists(request)])

    def withdraw(self, user: str, request_id: str) -> str:
        """The requester takes the request back."""
        request = self._decidable(request_id, "withdraw", user)
        return self.client.write(delete=_request_rows(request), preconditions=[_request_exists(request)])

    def notifications(self, owner: str, after: str | None = None) -> Generator[str, None, None]:
        """Endless: ids of new access requests addressed to ``owner`` (the App Owner), as
        they are made."""
        for event in self.client.watch(["access_request"], after=after):
            for change in event.changes:
                rel = change.relationship
                if change.op is ChangeOp.TOUCH and rel.relation == "requester":
                    at_event = ReadConsistency.at_least_as_fresh(event.token)
                    check = self.client.check(
                        f"access_request:{rel.resource_id}", "notified", f"user:{owner}", consistency=at_event
                    )
                    if check.allowed:
                        yield rel.resource_id


def _request_rows(request: AccessRequest) -> list[str]:
    prefix = f"access_request:{request.request_id}"
    return [
        f"{prefix}#app@app:{request.app}",
        f"{prefix}#requester@user:{request.requester}",
        f"{prefix}#level@access_level:{request.level}",
    ]


def _request_exists(request: AccessRequest) -> Precondition:
    return _exists(f"access_request:{request.request_id}#requester@user:{request.requester}")


def demo(endpoint: str) -> None:
    """A short story through every handler; raises AssertionError if Stonetown disagrees."""
    suffix = uuid.uuid4().hex[:6]
    org, scraper, tool = f"acme-{suffix}", f"scraper-{suffix}", f"tool-{suffix}"
    with Client(endpoint, read_your_writes=True) as client:
        svc = PlatformService(client)
        svc.create_organization("olivia", org)
        svc.add_member("olivia", org, "adam", role="admin")
        for member in ("sam", "mia", "fiona"):
            svc.add_member("adam", org, member)
        svc.define_role("adam", org, f"finance-{suffix}", grants=("run",))
        svc.assign_role("adam", f"finance-{suffix}", "fiona")
        svc.create_app("sam", scraper, org=org)
        svc.grant("sam", scraper, "edit", "user:eve")
        svc.edit_app("eve", scraper, command="crawl --depth 2")
        run_id = svc.run_app("fiona", scraper)
        print(f"fiona ran {scraper}: {svc.view_run('fiona', run_id)}")
        _expect_refusal(lambda: svc.edit_app("fiona", scraper, command="rm -rf"))
        _expect_refusal(lambda: svc.view_logic("fiona", scraper))
        _expect_refusal(lambda: svc.run_app("mia", scraper))
        assert scraper in svc.visible_apps("mia") and svc.app_owner("mia", scraper) == "sam"
        _expect_refusal(lambda: svc.request_access("eve", scraper, "manage"))

        request_id = svc.request_access("mia", scraper, "run")
        assert svc.pending_requests("sam") == [request_id]
        svc.approve("sam", request_id)
        assert svc.allowed(f"app:{scraper}", "run", "mia")
        print(f"mia's request {request_id} approved by the App Owner; mia can run {scraper}")

        _expect_refusal(lambda: svc.view_run("anonymous", run_id))
        svc.set_link_sharing("adam", "run", run_id, "shared")
        print(f"anyone with the link sees {run_id}: {svc.view_run('anonymous', run_id)}")
        svc.set_link_sharing("adam", "run", run_id, "restricted")
        _expect_refusal(lambda: svc.view_run("anonymous", run_id))

        svc.create_app("ana", tool)
        svc.publish("ana", tool)
        oscar_run = svc.run_app("oscar", tool)
        _expect_refusal(lambda: svc.view_run("ana", oscar_run))
        svc.transfer_ownership("ana", tool, "bob")
        _expect_refusal(lambda: svc.transfer_ownership("ana", tool, "carl"))
        assert svc.allowed(f"app:{tool}", "manage", "ana") and not svc.allowed(f"app:{tool}", "own", "ana")
        svc.transfer_ownership("bob", tool, "ana")
        assert svc.allowed(f"app:{tool}", "own", "ana") and not svc.allowed(f"app:{tool}", "own", "bob")
        print(f"{tool} went to bob and back; bob keeps Can Manage")
        _expect_refusal(lambda: svc.remove_member("adam", org, "olivia"))
        _expect_refusal(lambda: svc.leave_organization("sam", org))
        svc.leave_organization("mia", org)
        print("demo: all checks behaved as the model says")


def _expect_refusal(action: Callable[[], object]) -> None:
    try:
        action()
    except (Forbidden, Refused) as exc:
        print(f"refused as expected: {exc}")
    else:
        raise AssertionError("the action should have been refused")


def main(argv: list[str] | None = None) -> int:
    """Command line: run the demo against ``--endpoint``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="127.0.0.1:50051")
    demo(parser.parse_args(argv).endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
