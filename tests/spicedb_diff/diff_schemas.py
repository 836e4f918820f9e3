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
