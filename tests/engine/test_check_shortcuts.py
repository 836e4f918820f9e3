"""The check plan's shortcuts (nested teams walked as one loop, see check_stored.compile_chain;
evaluations skipped when lookups alone refute them, a role its subject holds in no way, see
check_plan.CompiledSchema._skips) do exactly what the plain walk does: the same three-valued results (caveat
expressions, UNKNOWN of cycles), the same DepthExceeded, and the same memo, cycle flag and
deadline budget left in the run, on random data with cycles, caveats, expirations and
wildcards, check by check and within one run sharing its memo (CheckBulk)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

import pytest

from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.check import PLAIN_CYCLES, CheckRun, DepthExceeded, Subject
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.index import RelationshipIndex
from stonetown.schema import compile_schema

TEAMS = """
use expiration

caveat weekday(day int) {
    day < 6
}

definition user {}

definition team {
    relation member: user | user with expiration | user with weekday | team#member | team#member with weekday
}

definition org {
    relation admin: user
    relation member: user | team#member
    relation role: role
    permission is_member = admin + member
    permission run_apps = admin + role->run_apps
}

definition role {
    relation org: org
    relation holder: user | team#member
    relation grants_run: user:* | user:* with expiration
    relation grants_edit: user:*
    relation grants_manage: user:*
    permission member = holder & org->is_member
    permission manage_apps = member & grants_manage
    permission edit_apps = manage_apps + (member & grants_edit)
    permission run_apps = edit_apps + (member & grants_run)
}

definition app {
    relation org: org
    relation runner: user | team#member | role#member
    relation banned: user | team#member
    permission run = runner + org->run_apps
    permission guarded = run - banned
}
"""

# a relation reaching itself through an intersection operand: every cycle is UNKNOWN (see
# simple_recursive_relations), so the team search must leave cycles to the plain walk
UNRESOLVED = """
definition user {}

definition team {
    relation member: user | team#member
    relation allowed: user
    relation parent: team
    permission view = allowed & parent->view
    permission open = allowed - member
}

definition app {
    relation runner: team#member
    relation banned: team#member
    permission run = runner - banned
}
"""

# TEAMS without caveats on teams: a role's grants are factored (see CompiledSchema._factor)
TEAMS_PLAIN = TEAMS.replace(" | user with weekday", "").replace(" | team#member with weekday", "")

NOW = datetime.now(UTC)


def _relationships(rng: random.Random, variant: str) -> list[Relationship]:
    unresolved = variant == "unresolved"
    chains = rng.random() < 0.5
    users = [f"u{i}" for i in range(5)]
    teams = [f"t{i}" for i in range(7)]
    out: list[Relationship] = []

    def some(items: list[str], p: float) -> list[str]:
        return [x for x in items if rng.random() < p]

    def meta() -> dict[str, object]:
        roll = rng.random()
        if roll < 0.1 and variant == "caveats":
            return {"caveat": ContextualizedCaveat("weekday", {"day": rng.randrange(8)})}
        if roll < 0.15 and not unresolved:
            return {"expiration": NOW + timedelta(hours=rng.choice((-1, 1)))}
        return {}

    for team in teams:
        for user in some(users, 0.2):
            extra = meta()
            out.append(Relationship("team", team, "member", "user", user, **extra))  # type: ignore[arg-type]
        # cycles allowed: nested teams may point back up; in half the datasets each team
        # holds at most one team (chains, see check_stored.compile_chain), with few metadata
        nested = some(teams, 0.25)
        if chains:
            nested = nested[:1] if rng.random() < 0.8 else []
        for other in nested:
            extra = meta()
            extra.pop("expiration", None)
            if unresolved:
                extra = {}
            out.append(Relationship("team", team, "member", "team", other, "member", **extra))  # type: ignore[arg-type]
    if unresolved:
        for team in teams:
            out += [Relationship("team", team, "allowed", "user", u) for u in some(users, 0.4)]
            out += [Relationship("team", team, "parent", "team", t) for t in some(teams, 0.2)]
        for app in ("a0", "a1"):
            out += [Relationship("app", app, "runner", "team", t, "member") for t in some(teams, 0.3)]
            out += [Relationship("app", app, "banned", "team", t, "member") for t in some(teams, 0.2)]
        return out
    orgs, roles = ["o0", "o1"], ["r0", "r1", "r2", "r3"]
    for org in orgs:
        out += [Relationship("org", org, "admin", "user", u) for u in some(users, 0.1)]
        out += [Relationship("org", org, "member", "user", u) for u in some(users, 0.3)]
        out += [Relationship("org", org, "member", "team", t, "member") for t in some(teams, 0.2)]
    for role in roles:
        org = rng.choice(orgs)
        out.append(Relationship("org", org, "role", "role", role))
        out.append(Relationship("role", role, "org", "org", org))
        out += [Relationship("role", role, "holder", "user", u) for u in some(users, 0.2)]
        out += [Relationship("role", role, "holder", "team", t, "member") for t in some(teams, 0.2)]
        for flag in ("grants_run", "grants_edit", "grants_manage"):
            if rng.random() < 0.4:
                extra = meta() if flag == "grants_run" else {}
                extra.pop("caveat", None)
                out.append(Relationship("role", role, flag, "user", "*", **extra))  # type: ignore[arg-type]
    for app in ("a0", "a1", "a2"):
        out += [Relationship("app", app, "org", "org", o) for o in some(orgs, 0.6)]
        out += [Relationship("app", app, "runner", "user", u) for u in some(users, 0.1)]
        out += [Relationship("app", app, "runner", "team", t, "member") for t in some(teams, 0.2)]
        out += [Relationship("app", app, "runner", "role", r, "member") for r in some(roles, 0.2)]
        out += [Relationship("app", app, "banned", "user", u) for u in some(users, 0.1)]
        out += [Relationship("app", app, "banned", "team", t, "member") for t in some(teams, 0.15)]
    return out


def _queries(unresolved: bool) -> list[tuple[str, str, str, Subject]]:
    subjects: list[Subject] = [("user", f"u{i}", "") for i in range(6)]
    subjects += [("team", "t1", "member"), ("team", "t4", "member")]
    queries = [("team", f"t{i}", "member", s) for i in range(7) for s in subjects]
    if unresolved:
        queries += [("team", f"t{i}", p, s) for i in range(7) for p in ("view", "open") for s in subjects]
        return queries + [("app", a, "run", s) for a in ("a0", "a1") for s in subjects]
    subjects += [("role", "r0", "member")]
    queries += [("role", f"r{i}", p, s) for i in range(4) for p in ("run_apps", "member") for s in subjects]
    queries += [("org", o, "run_apps", s) for o in ("o0", "o1") for s in subjects]
    return queries + [
        ("app", a, p, s) for a in ("a0", "a1", "a2") for p in ("run", "guarded") for s in subjects
    ]


def _answer(run: CheckRun, query: tuple[str, str, str, Subject]) -> object:
    try:
        return run.dispatch(*query, 0)
    except DepthExceeded as exc:
        return (DepthExceeded, str(exc))


def _state(run: CheckRun) -> object:
    """What a run keeps between the checks of a CheckBulk (the stack is empty between)."""
    assert not run.stack
    return run.memo, run.cut, run.budget


@pytest.mark.parametrize("variant", ["caveats", "plain", "unresolved"])
def test_shortcuts_answer_as_the_plain_walk(variant: str) -> None:
    unresolved = variant == "unresolved"
    text = {"caveats": TEAMS, "plain": TEAMS_PLAIN, "unresolved": UNRESOLVED}[variant]
    schema = compile_schema(text)
    # OpenFGA's cycle rule (the OpenFGA-semantics store)
    fast = CompiledSchema(schema, openfga_cycles=True)
    plain = CompiledSchema(schema, shortcuts=False, openfga_cycles=True)
    assert unresolved == (not fast.simple_recursive)
    fast_flat, plain_flat = copy.copy(fast), copy.copy(plain)
    # the flavour OpenFGA's ListUsers evaluates: every cycle plainly False
    fast_flat.simple_recursive = plain_flat.simple_recursive = PLAIN_CYCLES  # type: ignore[assignment]
    # the server's exact rule
    fast_exact, plain_exact = CompiledSchema(schema), CompiledSchema(schema, shortcuts=False)
    queries = _queries(unresolved)
    compared = granted = conditional = exceeded = 0
    for seed in range(40):
        rng = random.Random(seed)
        index = RelationshipIndex.build(_relationships(rng, variant), 1)
        for max_depth in (2, 3, 4, 6, 50):
            for one, other in ((fast, plain), (fast_flat, plain_flat), (fast_exact, plain_exact)):
                for query in queries:
                    run_one, run_other = CheckRun(one, index, max_depth), CheckRun(other, index, max_depth)
                    got = _answer(run_one, query)
                    assert got == _answer(run_other, query), (seed, max_depth, query)
                    assert _state(run_one) == _state(run_other), (seed, max_depth, query)
                    compared += 1
                    granted += got is True
                    exceeded += isinstance(got, tuple)
                    conditional += got is not True and got is not False and not isinstance(got, tuple)
                # one run for all queries, in a random order: the memo carries over
                order = rng.sample(queries, len(queries))
                bulk_one, bulk_other = CheckRun(one, index, max_depth), CheckRun(other, index, max_depth)
                for query in order:
                    assert _answer(bulk_one, query) == _answer(bulk_other, query), (seed, max_depth, query)
                    assert _state(bulk_one) == _state(bulk_other), (seed, max_depth, query)
    # the data exercises grants, caveats/cycles and the depth limit
    assert granted > compared // 20
    assert conditional > compared // 200 or variant == "plain"
    assert exceeded > compared // 200


def test_role_dispatch_skipped_only_when_refuted() -> None:
    schema = compile_schema(TEAMS_PLAIN)
    rels = [Relationship("org", "o0", "member", "user", "ana")]
    for role in ("r0", "r1"):
        rels += [
            Relationship("org", "o0", "role", "role", role),
            Relationship("role", role, "org", "org", "o0"),
            Relationship("role", role, "grants_run", "user", "*"),
        ]
    # r0 is held through a team, r1 by a user only
    rels += [
        Relationship("role", "r0", "holder", "team", "t0", "member"),
        Relationship("team", "t0", "member", "user", "ana"),
        Relationship("role", "r1", "holder", "user", "cid"),
    ]
    index = RelationshipIndex.build(rels, 1)
    compiled = CompiledSchema(schema)
    calls: list[tuple[str, str, str]] = []
    original = CheckRun.dispatch

    def counting(run: CheckRun, rtype: str, rid: str, rel: str, subj: Subject, depth: int) -> object:
        calls.append((rtype, rid, rel))
        return original(run, rtype, rid, rel, subj, depth)

    def check(subject: str, max_depth: int = 50) -> object:
        return CheckRun(compiled, index, max_depth).dispatch(
            "org", "o0", "run_apps", ("user", subject, ""), 0
        )

    CheckRun.dispatch = counting  # type: ignore[method-assign,assignment]
    try:
        # bob is no holder of r1 (no subject set holds it either): refuted by lookups alone;
        # r0 has a team among its holders: evaluated
        assert check("bob") is False
        assert ("role", "r1", "run_apps") not in calls
        assert ("role", "r0", "run_apps") in calls
        calls.clear()
        assert check("ana") is True
        assert ("role", "r0", "run_apps") in calls
        calls.clear()
        assert check("cid") is False  # holds r1, but is no member of o0
        assert ("role", "r1", "run_apps") in calls
    finally:
        CheckRun.dispatch = original  # type: ignore[method-assign]
    # at the depth limit the skipped dispatch would raise: it is not skipped
    with pytest.raises(DepthExceeded):
        check("bob", max_depth=1)
