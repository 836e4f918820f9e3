"""The schemas and relationships of the SpiceDB comparison's scenarios (diff_scenarios.py)."""

DOCS = """
definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user | group#member
    permission view = viewer + parent->view
}

definition doc {
    relation folder: folder
    relation owner: user
    relation viewer: user | user:* | group#member
    relation banned: user
    permission edit = owner
    permission view = (viewer + owner + folder->view) - banned
    permission both = viewer & owner
}
"""

DOCS_RELS = (
    "group:eng#member@user:ana",
    "group:eng#member@group:ops#member",
    "group:ops#member@user:oli",
    "folder:root#viewer@group:eng#member",
    "folder:sub#parent@folder:root",
    "doc:d1#folder@folder:sub",
    "doc:d1#owner@user:bob",
    "doc:d1#viewer@user:bob",
    "doc:d1#banned@user:oli",
    "doc:d2#viewer@user:*",
    "doc:d2#banned@user:eve",
    "doc:d3#viewer@group:ops#member",
)

CAVEATS = """
use expiration

caveat ip_allowed(ip string, allowed list<string>) {
    ip in allowed
}

caveat over(x int) {
    x > 3
}

definition user {}

definition doc {
    relation viewer: user with ip_allowed | user:* with over
    relation editor: user with over and expiration | user | user with over
    relation temp: user with expiration
    permission view = viewer + editor
    permission edit = editor
    permission visit = temp
}
"""

ARROWS = """
definition user {}

definition team {
    relation member: user
    relation lead: user
    permission manage = lead & member
}

definition project {
    relation team: team
    relation watcher: user
    permission any_member = team.any(member)
    permission all_members = team.all(member)
    permission managed = team->manage
    permission both = any_member & watcher
    permission only_watch = watcher - team->member
}
"""

ARROWS_RELS = (
    "team:a#member@user:ana",
    "team:a#member@user:bob",
    "team:a#lead@user:ana",
    "team:b#member@user:ana",
    "team:b#lead@user:bob",
    "project:p1#team@team:a",
    "project:p1#team@team:b",
    "project:p2#team@team:a",
    "project:p2#watcher@user:bob",
    "project:p2#watcher@user:cy",
)

RECURSIVE = """
definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: group#member
    permission view = viewer
}
"""

CAVEATED_SETS = """
caveat tier(level int) {
    level >= 2
}

definition user {}

definition group {
    relation member: user | user with tier
}

definition doc {
    relation viewer: group#member | group#member with tier
    relation blocked: user with tier
    permission view = viewer - blocked
}
"""

EXPAND_SHAPES = """
use expiration

caveat cav(x int) {
    x > 1
}

definition user {}

definition team {
    relation member: user | team#member | user with cav | user with expiration
    relation pub: user:*
    relation lead: user
    permission manage = lead & member
    permission everyone = member + pub
}

definition other {
    relation xyz: user
}

definition doc {
    relation team: team | other | team with cav | team with expiration
    relation viewer: user | user:* | team#member | user with cav
    relation owner: user
    relation banned: user
    permission single_cu = viewer
    permission single_arrow = team->member
    permission single_any = team.any(manage)
    permission single_all = team.all(member)
    permission nothing = nil
    permission uni = viewer + owner
    permission uni_arrow = viewer + team->member
    permission inter = viewer & owner
    permission inter_nested = viewer & (owner + banned)
    permission excl = viewer - banned
    permission excl_two = viewer - banned - owner
    permission excl_sets = (viewer + owner) - (banned & owner)
    permission all_minus = team.all(member) - viewer
    permission via_perm = single_cu
    permission via_perms = uni + single_arrow
    permission nil_union = nil + viewer
}
"""

EXPAND_PERMISSIONS = (
    "single_cu",
    "single_arrow",
    "single_any",
    "single_all",
    "nothing",
    "uni",
    "uni_arrow",
    "inter",
    "inter_nested",
    "excl",
    "excl_two",
    "excl_sets",
    "all_minus",
    "via_perm",
    "via_perms",
    "nil_union",
    "viewer",
    "team",
)

EXPAND_RELS = (
    "doc:d#team@team:a",
    "doc:d#team@team:b",
    "doc:d#team@other:o",
    'doc:d#team@team:c[cav:{"x":0}]',
    "doc:d#team@team:gone[expiration:2001-01-01T00:00:00Z]",
    "doc:d#team@team:later[expiration:2099-01-01T00:00:00Z]",
    "team:a#member@user:ana",
    "team:a#member@team:b#member",
    "team:a#lead@user:ana",
    "team:b#member@user:zed",
    "team:b#pub@user:*",
    "team:c#member@user:cy[cav]",
    "team:later#member@user:old[expiration:2001-01-01T00:00:00Z]",
    "doc:d#viewer@user:bob",
    "doc:d#viewer@user:*",
    'doc:d#viewer@user:cy[cav:{"x":5}]',
    "doc:d#viewer@team:a#member",
    "doc:d#owner@user:bob",
    "doc:d#banned@user:eve",
)

DEPTH = """
definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user
    permission view = viewer + parent->view
}

definition doc {
    relation viewer: group#member
    permission view = viewer
}
"""


def chain(link: str, length: int) -> list[str]:
    """`length` relationships linking element n to n + 1 (`link` has two `{}`)."""
    return [link.format(n, n + 1) for n in range(length)]

# LookupSubjects beside a wildcard, as SpiceDB's subject-set algebra shapes it (spicefuzz cases,
# minimized): `both` lists u1 beside `*` (the wildcard of one side covers the subject the other
# names); `view` lists the subjects of `parent` beside a conditional wildcard; `read` excludes
# u2 from its wildcard although Check answers u2 as it answers the wildcard (conditional).
WILDCARD_SHAPES = """
caveat cav_or(x int, flag bool) {
    x == 1 || flag
}

definition user {}

definition org {
    relation banned: user with cav_or
    permission manage = banned
}

definition doc {
    relation viewer: user:*
    relation editor: user | user:*
    relation shared: user:* with cav_or
    relation parent: user
    relation owner: org#banned with cav_or
    relation guest: user:* with cav_or
    permission both = viewer & editor
    permission view = shared & (shared + parent)
    permission read = guest - owner.any(manage) - guest
}
"""

WILDCARD_SHAPES_RELS = (
    "doc:d1#viewer@user:*",
    "doc:d1#editor@user:*",
    "doc:d1#editor@user:u1",
    "doc:d2#shared@user:*[cav_or]",
    "doc:d2#parent@user:u1",
    "doc:d2#parent@user:u2",
    'org:o3#banned@user:u2[cav_or:{"x":1}]',
    "doc:d3#owner@org:o3#banned[cav_or]",
    'doc:d3#guest@user:*[cav_or:{"x":0}]',
)

# SpiceDB v1.54 defects (README "Coming from SpiceDB"): its bulk check reports one item's
# missing caveat parameters on another (`org:o1 edit doc:d2#edit` misses `flag, x` beside an
# `org:o2` item, `flag` alone); its LookupResources through `.all()` over a subject-set tupleset
# with a caveated member (`tall`) leaves the resource out, while its LookupSubjects lists the
# subject and its LookupResources through `.any()` (`tany`) lists the resource.
SPICEDB_QUIRKS = """
caveat cav_or(x int, flag bool) {
    x == 1 || flag
}

caveat cav_lt(x int, y int) {
    x < y
}

definition team {
    relation org: team with cav_lt | team#manage
    permission manage = org
}

definition org {
    relation parent: doc#edit with cav_or
    relation teams: team#org
    permission edit = parent.all(edit)
    permission tall = teams.all(org)
    permission tany = teams.any(org)
}

definition doc {
    relation banned: doc#edit with cav_or
    permission edit = banned
}
"""

SPICEDB_QUIRKS_RELS = (
    'org:o1#parent@doc:d1#edit[cav_or:{"x":5}]',
    "org:o2#parent@doc:d1#edit[cav_or]",
    'doc:d1#banned@doc:d2#edit[cav_or:{"x":2,"flag":true}]',
    "org:o3#teams@team:t1#org",
    "team:t1#org@team:t2[cav_lt]",
)
