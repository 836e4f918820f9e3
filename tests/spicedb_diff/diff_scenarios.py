"""The scenario table: a schema, relationships and calls, each sent to both sides.

A call's `known` text says why its answers are not compared: a SpiceDB v1.54 defect (from
../shared/tools/spicedb/README.md, or found here), a difference README's "Coming from SpiceDB"
documents, or (`REPORTED:`) a difference this suite found in the engine, left to its owners.
"""

from __future__ import annotations

from dataclasses import dataclass

import authzed.api.v1 as v1
from diff_requests import (
    CREATE,
    DELETE,
    MUST_MATCH,
    MUST_NOT_MATCH,
    Call,
    bulk,
    check,
    delete,
    every,
    expand,
    lookup_resources,
    lookup_subjects,
    precondition,
    read,
    schema,
    with_cursor,
    write,
)
from diff_schemas import (
    ARROWS,
    ARROWS_RELS,
    CAVEATED_SETS,
    CAVEATS,
    DEPTH,
    DOCS,
    DOCS_RELS,
    EXPAND_PERMISSIONS,
    EXPAND_RELS,
    EXPAND_SHAPES,
    RECURSIVE,
    SPICEDB_QUIRKS,
    SPICEDB_QUIRKS_RELS,
    WILDCARD_SHAPES,
    WILDCARD_SHAPES_RELS,
    chain,
)


@dataclass
class Scenario:
    """A named list of calls, run from an empty store."""

    name: str
    calls: list[Call]


# SpiceDB v1.54 defect (not yet in ../shared/tools/spicedb/README.md): a written relationship's
# caveat context of the wrong type fails with code UNKNOWN (a plain error, no ErrorInfo);
# Stonetown answers INVALID_ARGUMENT / ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR as SpiceDB
# does for the same mistake in a check's context.
SPICEDB_UNKNOWN_CONTEXT_TYPE = "SpiceDB v1.54 answers UNKNOWN without a reason"
BULK_MAXIMUM = (
    "README 'Coming from SpiceDB': configured maxima (--max-checks-per-bulk, 1000 by default) "
    "differ from the embedded SpiceDB's"
)
SPICEDB_CYCLES = (
    "../shared/tools/spicedb/README.md: SpiceDB answers data cycles with max-depth errors, "
    "Stonetown answers them"
)
# Differences found by this suite in the engine (not the API layer), reported to the lead:
SPICEDB_DEPTH_BOUNDARY = (
    "SpiceDB v1.54 counts depth differently per API: 48-49 subject sets or arrows deep its "
    "lookups fail where its Check answers (or the reverse); Stonetown's lookups fail exactly "
    "where its Check does (README 'Coming from SpiceDB')"
)
BULK_MISSING_CONTEXT = "SpiceDB v1.54 reports missing caveat parameters of other items of a bulk check"
ALL_ARROW_LOOKUP = (
    "SpiceDB v1.54's LookupResources leaves out a resource reached through .all() over a caveated "
    "subject-set member; its LookupSubjects and its .any() LookupResources list it"
)
SPICEDB_CHECK_CAVEAT = "../shared/tools/spicedb/README.md defect 2: SpiceDB's Check ignores the caveat"
GARBAGE = v1.Cursor(token="not-a-cursor")
PAST, FUTURE = "2001-01-01T00:00:00Z", "2099-01-01T00:00:00Z"


def _docs() -> list[Call]:
    return [schema(DOCS), write(*DOCS_RELS)]


SCENARIOS: list[Scenario] = [
    Scenario(
        "checks_over_unions_arrows_exclusions_wildcards",
        _docs()
        + [
            check("doc:d1", "view", "user:ana"),  # folder -> root -> eng
            check("doc:d1", "view", "user:oli"),  # banned
            check("doc:d1", "view", "user:bob"),
            check("doc:d1", "edit", "user:bob"),
            check("doc:d1", "both", "user:bob"),
            check("doc:d1", "both", "user:ana"),
            check("doc:d2", "view", "user:zed"),  # wildcard
            check("doc:d2", "view", "user:eve"),  # wildcard minus banned
            check("doc:d3", "view", "user:oli"),
            check("doc:d3", "viewer", "group:ops#member"),
            check("doc:d3", "view", "group:eng#member"),
            check("folder:sub", "view", "user:oli"),
            check("doc:nowhere", "view", "user:ana"),
            bulk(
                ("doc:d1", "view", "user:ana"),
                ("doc:d2", "view", "user:eve"),
                ("doc:d1", "nope", "user:ana"),
                ("nodef:x", "view", "user:ana"),
                ("doc:d3", "view", "user:oli"),
            ),
        ],
    ),
    Scenario(
        "lookups_and_expand",
        _docs()
        + [
            lookup_resources("doc", "view", "user:ana"),
            lookup_resources("doc", "view", "user:oli"),
            lookup_resources("doc", "view", "user:bob"),
            lookup_resources("doc", "edit", "user:bob"),
            lookup_resources("folder", "view", "user:oli"),
            lookup_resources("doc", "viewer", "group:ops#member"),
            lookup_subjects("doc:d1", "view", "user"),
            lookup_subjects("doc:d2", "view", "user"),  # wildcard with an exclusion
            lookup_subjects("doc:d3", "view", "user"),
            lookup_subjects("doc:d1", "view", "group#member"),
            lookup_subjects("folder:sub", "view", "user"),
            lookup_subjects("doc:d1", "both", "user"),
            expand("doc:d1", "viewer"),
            expand("group:eng", "member"),
            expand("doc:d2", "view"),
            expand("doc:d1", "both"),
            expand("folder:sub", "viewer"),
        ],
    ),
    Scenario(
        "reads_with_filters",
        _docs()
        + [
            read(resource_type="doc"),
            read(resource_type="doc", resource_id="d1"),
            read(resource_type="doc", relation="viewer"),
            read(resource_type="doc", subject="user:bob"),
            read(resource_type="doc", subject="group#member"),
            read(resource_type="group", subject="group:ops#member"),
            read(resource_type="doc", subject="user#..."),
            read(resource_type="doc", prefix="d"),
            read(resource_type="folder", relation="parent", subject="folder"),
            read(resource_type="nodef"),
            read(resource_type="doc", relation="nope"),
            read(resource_type="doc", resource_id="d1", prefix="d"),
            read(),
        ],
    ),
    Scenario(
        "invalid_schemas",
        [
            Call("ReadSchema", v1.ReadSchemaRequest()),  # nothing written yet
            check("doc:d1", "view", "user:ana"),
            read(resource_type="doc"),
            write("doc:d1#viewer@user:ana"),
            schema("definition user {\n relation x: nothing\n}"),
            schema("definition user {}\ndefinition doc {\n permission view = nope\n}"),
            schema("definition user {\n"),
            schema("definition user {}\ndefinition user {}"),
            schema("definition user {}\ndefinition doc {\n relation r: user\n relation r: user\n}"),
            schema("definition doc {\n relation p: doc\n permission v = p->missing\n}"),
            # accepted by both: an arrow to a relation no subject type has grants nothing
            schema("definition doc {\n relation parent: doc\n permission view = parent->missing\n}"),
            schema("caveat c(x int) {\n x +\n}\ndefinition user {}"),
            schema("definition user {}\ndefinition doc {\n relation viewer: user with nocaveat\n}"),
            schema("", known="README 'Coming from SpiceDB': WriteSchema with an empty schema is refused"),
            schema(DOCS),
            write(*DOCS_RELS),
            # removing a relation that still has relationships
            schema(DOCS.replace("    relation banned: user\n", "").replace(" - banned", "")),
            # removing a whole definition in use
            schema("definition user {}"),
            read(resource_type="doc", relation="banned"),
            Call("ReadSchema", v1.ReadSchemaRequest()),
        ],
    ),
    Scenario(
        "invalid_writes",
        [
            schema(DOCS),
            write("nodef:x#viewer@user:ana"),
            write("doc:x#nope@user:ana"),
            write("doc:x#viewer@nodef:y"),
            write("doc:x#owner@group:eng#member"),  # subject type not allowed
            write("doc:x#owner@user:*"),  # wildcard not allowed
            write("doc:x#view@user:ana"),  # a permission
            write("doc:x#viewer@user:ana[nocaveat]"),  # unknown caveat
            write("doc:x#viewer@user:ana[expiration:2099-01-01T00:00:00Z]"),  # expiration not allowed
            write("doc:bad id#viewer@user:ana"),
            write("doc:x#viewer@user:" + "a" * 1025),
            write("doc:x#viewer@user:" + "a" * 1024),
            write("Doc:x#viewer@user:ana"),
            write("doc:x#Viewer@user:ana"),
            write("doc:x#viewer@user:ana#nope"),
            write("doc:x#viewer@user:ana", "doc:x#viewer@user:ana"),  # the same relationship twice
            write(*[f"doc:many#viewer@user:u{i}" for i in range(1001)]),
            write(*[f"doc:many#viewer@user:u{i}" for i in range(1000)]),
            write("doc:x#viewer@user:ana", op=CREATE),
            write("doc:x#viewer@user:ana", op=CREATE),  # already exists
            write("doc:x#viewer@user:nobody", op=DELETE),  # deleting what is absent is fine
            write(),  # nothing to do
            write("doc:*#viewer@user:ana"),  # a wildcard resource
            write("doc:x#viewer@user:ana#..."),
            write("doc:x#viewer@group:eng#member", "doc:x#viewer@group:eng"),
            write("doc:x#viewer@user:ana", preconditions=(precondition(MUST_MATCH),)),  # an empty filter
            write(
                "doc:x#viewer@user:ana",
                preconditions=tuple(
                    precondition(MUST_NOT_MATCH, resource_type="doc", resource_id=f"n{i}")
                    for i in range(1001)
                ),
            ),
            read(resource_type="doc", resource_id="x"),
        ],
    ),
    Scenario(
        "preconditions",
        _docs()
        + [
            write(
                "doc:p#viewer@user:ana",
                preconditions=(precondition(MUST_MATCH, resource_type="doc", resource_id="nope"),),
            ),
            write(
                "doc:p#viewer@user:ana",
                preconditions=(precondition(MUST_NOT_MATCH, resource_type="doc", resource_id="d1"),),
            ),
            write("doc:p#viewer@user:ana", preconditions=(precondition(MUST_MATCH, resource_type="nodef"),)),
            write(
                "doc:p#viewer@user:ana",
                preconditions=(precondition(MUST_MATCH, resource_type="doc", relation="nope"),),
            ),
            write(
                "doc:p#viewer@user:ana",
                preconditions=(
                    precondition(
                        MUST_MATCH,
                        resource_type="doc",
                        resource_id="d1",
                        relation="owner",
                        subject="user:bob",
                    ),
                    precondition(MUST_NOT_MATCH, resource_type="doc", resource_id="p"),
                ),
            ),
            read(resource_type="doc", resource_id="p"),
            delete(
                resource_type="doc",
                resource_id="d1",
                preconditions=(precondition(MUST_MATCH, resource_type="doc", resource_id="gone"),),
            ),
            read(resource_type="doc", resource_id="d1"),
        ],
    ),
    Scenario(
        "caveats_and_context",
        [
            schema(CAVEATS),
            write(
                'doc:c1#viewer@user:ana[ip_allowed:{"allowed":["1.1.1.1"]}]',
                "doc:c2#viewer@user:*[over]",
                'doc:c3#editor@user:bob[over:{"x":5}]',
                "doc:c3#editor@user:cy",
            ),
            write("doc:c1#viewer@user:bob"),  # caveat required
            write(
                'doc:c1#viewer@user:bob[ip_allowed:{"ip":1}]',  # a context of the wrong type
                known=SPICEDB_UNKNOWN_CONTEXT_TYPE,
            ),
            check("doc:c1", "view", "user:ana"),
            check("doc:c1", "view", "user:ana", {"ip": "1.1.1.1"}),
            check("doc:c1", "view", "user:ana", {"ip": "2.2.2.2"}),
            check("doc:c1", "view", "user:ana", {"ip": 7}),
            check("doc:c2", "view", "user:zed"),
            check("doc:c2", "view", "user:zed", {"x": 9}),
            check("doc:c2", "view", "user:zed", {"x": "nine"}),
            check("doc:c2", "view", "user:zed", {"x": 1}),
            check("doc:c3", "edit", "user:bob"),
            check("doc:c3", "edit", "user:bob", {"x": 1}),
            check("doc:c3", "edit", "user:cy"),
            bulk(
                ("doc:c1", "view", "user:ana"), ("doc:c2", "view", "user:zed"), context={"ip": 7, "x": "nine"}
            ),
            lookup_resources("doc", "view", "user:zed", {"x": "nine"}),
            lookup_subjects("doc:c2", "view", "user", {"x": "nine"}),
            bulk(
                ("doc:c1", "view", "user:ana"),
                ("doc:c2", "view", "user:zed"),
                ("doc:c3", "edit", "user:bob"),
                context={"ip": "1.1.1.1"},
            ),
            lookup_resources("doc", "view", "user:ana"),
            lookup_resources("doc", "view", "user:ana", {"ip": "1.1.1.1", "x": 0}),
            lookup_resources("doc", "view", "user:zed", {"x": 4}),
            lookup_subjects("doc:c1", "view", "user"),
            lookup_subjects("doc:c2", "view", "user", {"x": 4}),
            lookup_subjects("doc:c3", "edit", "user"),
            read(resource_type="doc"),
        ],
    ),
    Scenario(
        "expiration",
        [
            schema(CAVEATS),
            write(
                f"doc:e1#temp@user:old[expiration:{PAST}]",
                f"doc:e1#temp@user:new[expiration:{FUTURE}]",
                f'doc:e1#editor@user:bob[over:{{"x":5}}][expiration:{FUTURE}]',
                f"doc:e1#editor@user:gone[over][expiration:{PAST}]",
            ),
            write("doc:e1#temp@user:forever"),  # expiration required
            *every(
                ["doc:e1"],
                ["visit", "edit"],
                ["user:old", "user:new", "user:bob", "user:gone"],
                [None, {"x": 9}],
            ),
            read(resource_type="doc"),
        ],
    ),
    Scenario(
        "pages_limits_and_cursors",
        [
            schema(DOCS),
            write(
                *[f"doc:p{i:02}#viewer@user:ana" for i in range(25)],
                *[f"doc:p{i:02}#owner@user:bob" for i in range(7)],
            ),
            lookup_resources("doc", "view", "user:ana", limit=10, pages=True),
            lookup_resources("doc", "view", "user:ana", limit=25, pages=True),
            lookup_resources("doc", "view", "user:ana", limit=1, pages=True),
            lookup_resources("doc", "view", "user:ana", limit=1001),
            read(resource_type="doc", limit=10, pages=True),
            read(resource_type="doc", relation="owner", limit=3, pages=True),
            read(resource_type="doc", limit=1001),
            Call("ReadRelationships", with_cursor(read(resource_type="doc", limit=5).request, GARBAGE)),
            Call(
                "LookupResources",
                with_cursor(lookup_resources("doc", "view", "user:ana", limit=5).request, GARBAGE),
            ),
            # a cursor of another call: another permission, another subject, another method
            Call(
                "LookupResources",
                lookup_resources("doc", "edit", "user:bob", limit=5).request,
                cursor_from=lookup_resources("doc", "view", "user:ana", limit=5),
            ),
            Call(
                "LookupResources",
                lookup_resources("doc", "view", "user:ana", limit=5).request,
                cursor_from=read(resource_type="doc", limit=5),
            ),
            Call(
                "ReadRelationships",
                read(resource_type="doc", limit=5).request,
                cursor_from=lookup_resources("doc", "view", "user:ana", limit=5),
            ),
            Call(
                "ReadRelationships",
                read(resource_type="doc", relation="owner", limit=5).request,
                cursor_from=read(resource_type="doc", limit=5),
            ),
            check("doc:p03", "view", "user:ana"),
        ],
    ),
    Scenario(
        "deletes_with_limits",
        [
            schema(DOCS),
            write(*[f"doc:q{i:02}#viewer@user:ana" for i in range(12)], "doc:keep#viewer@user:bob"),
            delete(resource_type="doc", subject="user:ana", limit=5),  # more than the limit
            delete(resource_type="doc", subject="user:ana", limit=5, partial=True),
            read(resource_type="doc", subject="user:ana"),
            delete(resource_type="doc", subject="user:ana", limit=100),
            delete(resource_type="doc", subject="user:ana", limit=1001),
            read(resource_type="doc"),
            delete(resource_type="doc", subject="user:ana"),
            delete(resource_type="nodef"),
            delete(resource_type="doc", relation="nope"),
            delete(resource_type="doc", resource_id="keep", limit=1),
            delete(),
            delete(resource_type="doc", resource_id="keep", prefix="k"),
            delete(resource_type="doc", subject="nodef"),
            delete(resource_type="doc", subject="group#nope"),
            delete(
                resource_type="doc",
                resource_id="keep",
                preconditions=(precondition(MUST_MATCH, resource_type="doc", resource_id="keep"),),
            ),
            read(resource_type="doc"),
        ],
    ),
    Scenario(
        "arrows_any_all_and_intersections",
        [schema(ARROWS), write(*ARROWS_RELS)]
        + every(
            ["project:p1", "project:p2"],
            ["any_member", "all_members", "managed", "both", "only_watch"],
            ["user:ana", "user:bob", "user:cy"],
        )
        + [
            expand("project:p1", "managed"),
            expand("team:a", "manage"),
            expand("project:p2", "only_watch"),
            expand("project:p1", "any_member"),
        ],
    ),
    Scenario(
        # every node compared with what it expands: one-operand permissions (a one-child union),
        # arrows to types lacking the relation (an empty leaf), caveated and expiring arrows
        "expand_tree_shapes",
        [schema(EXPAND_SHAPES), write(*EXPAND_RELS)]
        + [expand(f"doc:{d}", name) for d in ("d", "empty") for name in EXPAND_PERMISSIONS]
        + [expand("team:a", "member"), expand("team:a", "manage"), expand("team:b", "everyone")],
    ),
    Scenario(
        "caveated_subject_sets_and_exclusions",
        [
            schema(CAVEATED_SETS),
            write(
                "group:g#member@user:ana",
                "group:g#member@user:bob[tier]",
                "group:h#member@user:cy",
                "doc:d#viewer@group:g#member",
                "doc:d#viewer@group:h#member[tier]",
                "doc:d#blocked@user:ana[tier]",
            ),
            *every(
                ["doc:d"], ["view"], ["user:ana", "user:bob", "user:cy"], [None, {"level": 1}, {"level": 3}]
            ),
            lookup_subjects("doc:d", "view", "group#member"),
        ],
    ),
    Scenario(
        "recursion_and_cycles",
        [
            schema(RECURSIVE),
            write(
                *[f"group:g{i}#member@group:g{i + 1}#member" for i in range(20)],
                "group:g20#member@user:deep",
                "doc:d#viewer@group:g0#member",
            ),
            check("doc:d", "view", "user:deep"),
            check("doc:d", "view", "user:nobody"),
            lookup_resources("doc", "view", "user:deep"),
            lookup_subjects("doc:d", "view", "user"),
            write(
                *[f"group:t{i}#member@group:t{i + 1}#member" for i in range(70)],
                "group:t70#member@user:far",
                "doc:far#viewer@group:t0#member",
            ),
            check("doc:far", "view", "user:far"),
            bulk(("doc:far", "view", "user:far"), ("doc:d", "view", "user:deep")),
            lookup_resources("doc", "view", "user:far"),
            lookup_subjects("doc:far", "view", "user"),
            write(
                "group:c1#member@group:c2#member",
                "group:c2#member@group:c1#member",
                "group:c2#member@user:loop",
                "doc:cyc#viewer@group:c1#member",
            ),
            check("doc:cyc", "view", "user:loop"),
            check("doc:cyc", "view", "user:nobody", known=SPICEDB_CYCLES),
            lookup_resources("doc", "view", "user:loop", known=SPICEDB_CYCLES),
            lookup_subjects("doc:cyc", "view", "user", known=SPICEDB_CYCLES),
        ],
    ),
    Scenario(
        # chains of subject sets and of arrows: all four APIs answer 47 deep and fail with
        # max depth (FAILED_PRECONDITION, MAXIMUM_DEPTH_EXCEEDED) 50 deep, as SpiceDB's do
        "depth_limits",
        [
            schema(DEPTH),
            write(*chain("group:s{}#member@group:s{}#member", 47), "group:s47#member@user:u"),
            write(*chain("group:t{}#member@group:t{}#member", 50), "group:t50#member@user:u"),
            write(*chain("group:b{}#member@group:b{}#member", 48), "group:b48#member@user:u"),
            write(*chain("folder:s{}#parent@folder:s{}", 47), "folder:s47#viewer@user:v"),
            write(*chain("folder:t{}#parent@folder:t{}", 50), "folder:t50#viewer@user:w"),
            write(*chain("folder:b{}#parent@folder:b{}", 49), "folder:b49#viewer@user:x"),
            write(*[f"doc:{d}#viewer@group:{d}0#member" for d in ("s", "t", "b")]),
            *[check(f"doc:{d}", "view", "user:u") for d in ("s", "t")],
            *[check(f"group:{g}0", "member", "user:u") for g in ("s", "t")],
            check("folder:s0", "view", "user:v"),
            check("folder:t0", "view", "user:w"),
            check("folder:t0", "view", "user:nobody"),
            lookup_subjects("doc:s", "view", "user"),
            lookup_subjects("doc:t", "view", "user"),
            lookup_subjects("folder:s0", "view", "user"),
            lookup_subjects("folder:t0", "view", "user"),
            lookup_resources("folder", "view", "user:v"),
            lookup_resources("folder", "view", "user:w"),
            lookup_resources("group", "member", "user:u"),
            expand("doc:t", "view"),
            expand("folder:s40", "view"),
            check("doc:b", "view", "user:u"),
            lookup_resources("doc", "view", "user:u", known=SPICEDB_DEPTH_BOUNDARY),
            lookup_subjects("doc:b", "view", "user", known=SPICEDB_DEPTH_BOUNDARY),
            check("folder:b0", "view", "user:x", known=SPICEDB_DEPTH_BOUNDARY),
        ],
    ),
    Scenario(
        "lookup_subjects_beside_wildcards",
        [schema(WILDCARD_SHAPES), write(*WILDCARD_SHAPES_RELS)]
        + [
            lookup_subjects("doc:d1", "both", "user"),
            check("doc:d1", "both", "user:u1"),
            lookup_subjects("doc:d2", "view", "user"),
            lookup_subjects("doc:d2", "view", "user", context={"flag": True}),
            lookup_subjects("doc:d2", "view", "user", context={"x": 2, "flag": False}),
            lookup_subjects("doc:d3", "read", "user"),
            lookup_subjects("doc:d3", "read", "user", context={"flag": True}),
            # a wildcard resource: SpiceDB's LookupSubjects and bulk check items accept it
            # (nothing is stored under it; a subject set of it holds itself)
            lookup_subjects("doc:*", "both", "user"),
            lookup_subjects("doc:*", "both", "doc#both"),
            lookup_subjects("doc:*", "view", "doc#both"),
            bulk(("doc:*", "both", "user:u1"), ("doc:d1", "both", "user:u1")),
            # a wildcard subject set: that item alone fails (WILDCARD_NOT_ALLOWED)
            bulk(("doc:d1", "both", "doc:*#both"), ("doc:d1", "both", "user:u1")),
            check("doc:*", "both", "user:u1"),
            expand("doc:*", "both"),
            read(resource_type="doc", resource_id="*"),
        ],
    ),
    Scenario(
        "spicedb_v1_54_quirks",
        [schema(SPICEDB_QUIRKS), write(*SPICEDB_QUIRKS_RELS)]
        + [
            check("org:o1", "edit", "doc:d2#edit"),
            check("org:o2", "edit", "doc:d2#edit"),
            bulk(("org:o1", "edit", "doc:d2#edit")),
            bulk(
                ("org:o1", "edit", "doc:d2#edit"),
                ("org:o2", "edit", "doc:d2#edit"),
                known=BULK_MISSING_CONTEXT,
            ),
            lookup_subjects("org:o3", "tall", "team"),
            lookup_subjects("org:o3", "tany", "team"),
            lookup_resources("org", "tany", "team:t2"),
            lookup_resources("org", "tall", "team:t2", known=ALL_ARROW_LOOKUP),
            check("org:o3", "tall", "team:t2", known=SPICEDB_CHECK_CAVEAT),
        ],
    ),
    Scenario(
        "bad_requests",
        _docs()
        + [
            check("doc:d1", "view", "user:*"),
            check("doc:bad id", "view", "user:ana"),
            check("doc:d1", "view", "user:" + "a" * 1025),
            check("nodef:d1", "view", "user:ana"),
            check("doc:d1", "nope", "user:ana"),
            check("doc:d1", "view", "nodef:ana"),
            check("doc:d1", "view", "user:ana#nope"),
            check("doc:d1", "view", "user:ana#..."),
            check("doc:*", "view", "user:ana"),
            lookup_resources("doc", "view", "user:ana#..."),
            bulk(("doc:d1", "view", "user:ana#..."), ("doc:*", "view", "user:ana")),
            read(resource_type="doc", resource_id="*"),
            lookup_subjects("doc:*", "view", "user"),
            expand("doc:*", "view"),
            lookup_resources("nodef", "view", "user:ana"),
            lookup_resources("doc", "nope", "user:ana"),
            lookup_resources("doc", "view", "user:*"),
            lookup_subjects("doc:d1", "nope", "user"),
            lookup_subjects("nodef:d1", "view", "user"),
            lookup_subjects("doc:d1", "view", "nodef"),
            expand("doc:d1", "nope"),
            expand("nodef:d1", "view"),
            bulk(*[("doc:d1", "view", f"user:u{i}") for i in range(1001)], known=BULK_MAXIMUM),
            bulk(*[("doc:d1", "view", f"user:u{i}") for i in range(1000)]),
        ],
    ),
]
