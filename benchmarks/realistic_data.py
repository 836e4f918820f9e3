"""Seeded datasets of three shapes users have (issue #19), deterministic by (shape, size, seed).

- ``docs``: users; teams nested in teams (40 % of teams inside another team of the same
  organization); organizations whose members are teams; folder trees up to 5 deep, each
  folder in an organization; documents in folders with owner, editor (team), viewer (user,
  team, ``user:*``) and ``banned``: ``view = (viewer + edit + folder->view) - banned``.
- ``github``: organizations with members and owners, nested teams, repositories with
  reader / writer / maintainer (users or teams); ``admin = (org->member & maintainer) +
  org->owner``: a maintainer outside the organization is not an admin.
- ``hierarchy``: document trees 12 levels deep, groups nested in groups, a grant at any level
  inherited below it, and per-level exclusions: ``view = (viewer + parent->view) - blocked``.

Every labelled check's answer is known by construction (``Check[6]``) and verified against
the engine by the harness. The first LookupResources query of a shape returns about
min(10,000, size/10) objects, and so does its first LookupSubjects query.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from benchmarks.dataset import Check
from stonetown.core.relationship import Relationship

SHAPES = ("docs", "github", "hierarchy")
BIG = 10_000

DOCS_SCHEMA = """
definition user {}

definition team {
    relation member: user | team#member
}

definition organization {
    relation member: team#member
    relation admin: user
    permission view = member + admin
}

definition folder {
    relation org: organization
    relation parent: folder
    relation editor: user | team#member
    relation viewer: user | team#member | user:*
    permission edit = editor + parent->edit
    permission view = viewer + edit + parent->view + org->view
}

definition document {
    relation folder: folder
    relation owner: user
    relation editor: team#member
    relation viewer: user | team#member | user:*
    relation banned: user
    permission edit = owner + editor + folder->edit
    permission view = (viewer + edit + folder->view) - banned
}
"""

GITHUB_SCHEMA = """
definition user {}

definition team {
    relation member: user | team#member
}

definition organization {
    relation member: user | team#member
    relation owner: user
}

definition repository {
    relation org: organization
    relation reader: user | team#member
    relation writer: user | team#member
    relation maintainer: user | team#member
    permission admin = (org->member & maintainer) + org->owner
    permission write = writer + admin
    permission read = reader + write
}
"""

HIERARCHY_SCHEMA = """
definition user {}

definition group {
    relation member: user | group#member
}

definition node {
    relation parent: node
    relation viewer: user | group#member
    relation blocked: user | group#member
    permission view = (viewer + parent->view) - blocked
}
"""

KINDS: dict[str, tuple[str, ...]] = {
    "docs": (
        "direct", "nested_team", "folder_ancestor", "wildcard", "edit_team",
        "denied_excluded", "denied_outsider", "denied_edit",
    ),
    "github": (
        "direct", "nested_team", "admin_intersection", "org_owner",
        "denied_intersection", "denied_outsider",
    ),
    "hierarchy": (
        "direct", "deep_inherited", "via_group", "denied_blocked", "denied_group_blocked", "denied_outsider",
    ),
}  # fmt: skip


@dataclass(slots=True)
class ShapeData:
    """Relationships and labelled queries of one shape, size and seed."""

    shape: str
    size: int
    seed: int
    schema: str
    relationships: list[Relationship] = field(default_factory=list)
    checks: dict[str, list[Check]] = field(default_factory=dict)
    # (resource type, permission, subject type, subject id, expected count)
    lookup_resources: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    # (resource type, resource id, permission, subject type, expected count)
    lookup_subjects: list[tuple[str, str, str, str, int]] = field(default_factory=list)

    def schema_text(self) -> str:
        """The schema the relationships are written against."""
        return self.schema

    def mixed_checks(self, count: int) -> list[Check]:
        """`count` checks drawn round-robin over every kind, shuffled."""
        rng = random.Random(self.seed)
        pools = [items for items in self.checks.values() if items]
        out: list[Check] = []
        while len(out) < count:
            out.extend(pool[rng.randrange(len(pool))] for pool in pools)
        rng.shuffle(out)
        return out[:count]


class _Base:
    """Shared state of the shape builders: the relationship list and labelled checks."""

    schema = ""

    def __init__(self, shape: str, size: int, seed: int) -> None:
        self.rng = random.Random(f"{shape}/{seed}")
        self.target = size
        self.data = ShapeData(shape, size, seed, self.schema, checks={k: [] for k in KINDS[shape]})
        self.rels = self.data.relationships
        self.per_kind = 400  # labelled checks kept per kind (the first ones, then sampled)
        self.seen = {k: 0 for k in KINDS[shape]}

    def add(self, rtype: str, rid: str, rel: str, stype: str, sid: str, srel: str = "") -> None:
        self.rels.append(Relationship(rtype, rid, rel, stype, sid, srel))

    def label(self, kind: str, check: Check) -> None:
        """Keep a labelled check (reservoir sampling: spread over the whole dataset)."""
        self.seen[kind] += 1
        pool = self.data.checks[kind]
        if len(pool) < self.per_kind:
            pool.append(check)
        else:
            slot = self.rng.randrange(self.seen[kind])
            if slot < self.per_kind:
                pool[slot] = check


class _Docs(_Base):
    """Organizations of teams, folder trees and documents (the issue's shape)."""

    schema = DOCS_SCHEMA

    def __init__(self, size: int, seed: int) -> None:
        super().__init__("docs", size, seed)
        self.org_docs: list[list[str]] = []
        self.public_docs: set[str] = set()
        self.org_tops: list[list[str]] = []
        self.org_users: list[int] = []

    def org(self, o: int) -> None:
        rng, add = self.rng, self.add
        org = f"o{o}"
        users = [f"o{o}u{i}" for i in range(60)]
        teams = [f"o{o}t{i}" for i in range(20)]
        parent: dict[str, str] = {}
        members: dict[str, list[str]] = {}
        for i, team in enumerate(teams):
            if i >= 4 and rng.random() < 0.4:  # nested inside an earlier team: no cycles
                parent[team] = teams[rng.randrange(i)]
                add("team", parent[team], "member", "team", team, "member")
            members[team] = rng.sample(users, 5)
            for u in members[team]:
                add("team", team, "member", "user", u)
        tops = [t for t in teams if t not in parent]
        member_teams = tops[: max(1, len(tops) // 3)]
        for t in member_teams:
            add("organization", org, "member", "team", t, "member")
        add("organization", org, "admin", "user", users[0])
        # who reaches the organization's view through nested teams
        closure: dict[str, set[str]] = {}
        for team in teams:
            chain, t = set(), team
            while True:
                chain.add(t)
                if t not in parent:
                    break
                t = parent[t]
            closure[team] = chain
        in_org = {u for t in teams if closure[t] & set(member_teams) for u in members[t]} | {users[0]}
        # folder trees up to 5 deep
        folders: list[tuple[str, int, str | None]] = []
        folder_editors: list[tuple[str, str]] = []
        for i in range(40):
            fid = f"o{o}f{i}"
            candidates = [f for f in folders if f[1] < 4]
            up = rng.choice(candidates) if candidates and rng.random() < 0.8 else None
            depth = up[1] + 1 if up else 0
            folders.append((fid, depth, up[0] if up else None))
            add("folder", fid, "org", "organization", org)
            if up:
                add("folder", fid, "parent", "folder", up[0])
            if rng.random() < 0.3:
                add("folder", fid, "viewer", "team", rng.choice(teams), "member")
            if rng.random() < 0.15:
                folder_editors.append((fid, rng.choice(teams)))
                add("folder", fid, "editor", "team", folder_editors[-1][1], "member")
        guest = f"o{o}guest"  # in no team: reads only through the folder it is granted
        deepest = max(folders, key=lambda f: f[1])
        # an outside user reading a root folder: every document below is theirs via ancestors
        reader_root = deepest
        while reader_root[2] is not None:
            reader_root = next(f for f in folders if f[0] == reader_root[2])
        if guest:
            add("folder", reader_root[0], "viewer", "user", guest)
        below_reader = {reader_root[0]}
        for f in folders:  # parents come first
            if f[2] in below_reader:
                below_reader.add(f[0])
        docs: list[str] = []
        editor_folders = {f for f, _ in folder_editors}
        by_id = {f[0]: f for f in folders}
        leaf = max(teams, key=lambda t: (len(closure[t]), t))
        top = next(t for t in closure[leaf] if t not in parent)
        for i in range(400):
            did = f"o{o}d{i}"
            folder = rng.choice(folders) if i else deepest
            docs.append(did)
            add("document", did, "folder", "folder", folder[0])
            owner = rng.choice(users)
            add("document", did, "owner", "user", owner)
            editor = rng.random() < 0.4 or i % 50 == 1
            if i % 50 == 1:  # a team deep in a nested chain edits: its members edit and view
                add("document", did, "editor", "team", top, "member")
            elif editor:
                add("document", did, "editor", "team", rng.choice(teams), "member")
            viewer = rng.choice(users) if rng.random() < 0.5 else None
            if viewer:
                add("document", did, "viewer", "user", viewer)
            public = rng.random() < 0.01
            if public:
                add("document", did, "viewer", "user", "*")
                self.public_docs.add(did)
            banned = rng.choice([u for u in users if u != owner]) if rng.random() < 0.05 else None
            if banned:
                add("document", did, "banned", "user", banned)
            # labels, now that the document is complete
            if viewer and viewer not in (owner, banned) and rng.random() < 0.5:
                self.label("direct", ("document", did, "view", "user", viewer, "", True))
            if public:
                self.label("wildcard", ("document", did, "view", "user", f"o{o + 1}u7", "", True))
            if banned and (banned in in_org or public):
                self.label("denied_excluded", ("document", did, "view", "user", banned, "", False))
            if guest and guest != banned and folder[0] in below_reader and folder[1] >= 2:
                self.label("folder_ancestor", ("document", did, "view", "user", guest, "", True))
            if i % 50 == 1 and members[leaf][0] not in (owner, banned):
                self.label("nested_team", ("document", did, "view", "user", members[leaf][0], "", True))
                self.label("edit_team", ("document", did, "edit", "user", members[leaf][0], "", True))
            if not public and o > 0 and i % 7 == 0:  # no wildcard on the path: nothing grants
                self.label("denied_outsider", ("document", did, "view", "user", f"o{o - 1}u3", "", False))
            if not editor and i % 9 == 0:
                chain, f = set(), by_id[folder[0]]
                while True:
                    chain.add(f[0])
                    if f[2] is None:
                        break
                    f = by_id[f[2]]
                if not chain & editor_folders:
                    member = next((u for u in users if u in in_org and u != owner), None)
                    if member:
                        self.label("denied_edit", ("document", did, "edit", "user", member, "", False))
        self.org_docs.append(docs)
        self.org_users.append(len({u for t in teams for u in members[t]}))
        self.org_tops.append(tops)

    def build(self) -> ShapeData:
        o = 0
        while len(self.rels) < self.target * 0.97 or o < 2:
            self.org(o)
            o += 1
        self.big_queries(o)
        return self.data

    def big_queries(self, orgs: int) -> None:
        """A user whose team (3 deep) is a member of enough organizations to read about
        min(10,000, size/10) documents; a company-wide team of enough organizations' teams
        reads one document (LookupSubjects of as many users)."""
        want = min(BIG, max(1, self.target // 10))
        add = self.add
        add("folder", "company", "org", "organization", "o0")
        add("document", "handbook", "folder", "folder", "company")
        add("document", "handbook", "owner", "user", "o0u0")
        add("document", "handbook", "viewer", "team", "company", "member")
        self.org_docs[0].append("handbook")
        add("team", "big_a", "member", "user", "big_reader")
        add("team", "big_b", "member", "team", "big_a", "member")
        add("team", "big_c", "member", "team", "big_b", "member")
        seen = set(self.public_docs)
        for o in range(orgs):
            if len(seen) >= want:
                break
            add("organization", f"o{o}", "member", "team", "big_c", "member")
            seen.update(self.org_docs[o])
        self.data.lookup_resources.append(("document", "view", "user", "big_reader", len(seen)))
        covered = 0
        for o in range(orgs):
            if covered >= want:
                break
            for t in self.org_tops[o]:
                add("team", "company", "member", "team", t, "member")
            covered += self.org_users[o]
        self.data.lookup_subjects.append(("document", "handbook", "view", "user", -1))
        o = orgs // 2
        self.data.lookup_resources.append(("document", "view", "user", f"o{o}u0", -1))
        self.data.lookup_subjects.append(("document", f"o{o}d5", "view", "user", -1))


class _Github(_Base):
    """Organizations, nested teams, repositories with an intersection for admin."""

    schema = GITHUB_SCHEMA

    def __init__(self, size: int, seed: int) -> None:
        super().__init__("github", size, seed)
        self.big_repos = 0

    def org(self, o: int) -> None:
        rng, add = self.rng, self.add
        org = f"o{o}"
        users = [f"o{o}u{i}" for i in range(50)]
        contractors = [f"o{o}c{i}" for i in range(5)]  # in teams, not organization members
        add("organization", org, "owner", "user", users[0])
        for u in users:
            add("organization", org, "member", "user", u)
        teams = [f"o{o}t{i}" for i in range(12)]
        parent: dict[str, str] = {}
        members: dict[str, list[str]] = {}
        for i, team in enumerate(teams):
            if i >= 3 and rng.random() < 0.4:
                parent[team] = teams[rng.randrange(i)]
                add("team", parent[team], "member", "team", team, "member")
            members[team] = rng.sample(users[1:], 4) + [contractors[i % 5]]
            for u in members[team]:
                add("team", team, "member", "user", u)
        deep = max(teams, key=lambda t: (len(self._chain(t, parent)), t))
        top = self._chain(deep, parent)[-1]
        for i in range(150):
            repo = f"o{o}r{i}"
            add("repository", repo, "org", "organization", org)
            reader = rng.choice(users[1:])
            add("repository", repo, "reader", "user", reader)
            self.label("direct", ("repository", repo, "read", "user", reader, "", True))
            add("repository", repo, "writer", "team", rng.choice(teams), "member")
            maintainer = rng.choice(users[1:])
            add("repository", repo, "maintainer", "user", maintainer)
            self.label("admin_intersection", ("repository", repo, "admin", "user", maintainer, "", True))
            if i % 5 == 0:
                add("repository", repo, "maintainer", "team", deep, "member")
                self.label(
                    "denied_intersection", ("repository", repo, "admin", "user", members[deep][-1], "", False)
                )
            if i % 3 == 0:
                add("repository", repo, "reader", "team", top, "member")
                self.label("nested_team", ("repository", repo, "read", "user", members[deep][0], "", True))
            self.label("org_owner", ("repository", repo, "admin", "user", users[0], "", True))
            if o > 0:
                self.label("denied_outsider", ("repository", repo, "read", "user", f"o{o - 1}u9", "", False))

    @staticmethod
    def _chain(team: str, parent: dict[str, str]) -> list[str]:
        out = [team]
        while out[-1] in parent:
            out.append(parent[out[-1]])
        return out

    def build(self) -> ShapeData:
        o = 0
        while len(self.rels) < self.target * 0.97 or o < 2:
            self.org(o)
            o += 1
        want = min(BIG, max(1, self.target // 10))
        add = self.add
        add("team", "big_a", "member", "user", "big_reader")
        add("team", "big_b", "member", "team", "big_a", "member")
        n = 0
        for o2 in range(o):
            for i in range(150):
                if n >= want:
                    break
                add("repository", f"o{o2}r{i}", "reader", "team", "big_b", "member")
                n += 1
        self.data.lookup_resources.append(("repository", "read", "user", "big_reader", n))
        add("repository", "o0r1", "reader", "team", "everyone", "member")
        users = 0
        for o2 in range(o):
            if users >= want:
                break
            for t in range(12):
                add("team", "everyone", "member", "team", f"o{o2}t{t}", "member")
            users += 50
        self.data.lookup_subjects.append(("repository", "o0r1", "read", "user", -1))
        self.data.lookup_resources.append(("repository", "admin", "user", "o1u0", -1))
        return self.data


class _Hierarchy(_Base):
    """Trees 12 levels deep with grants and exclusions at every level."""

    schema = HIERARCHY_SCHEMA
    depth = 12

    def __init__(self, size: int, seed: int) -> None:
        super().__init__("hierarchy", size, seed)

    def tree(self, t: int) -> None:
        rng, add = self.rng, self.add
        users = [f"t{t}u{i}" for i in range(40)]
        groups = [f"t{t}g{i}" for i in range(8)]
        members: dict[str, list[str]] = {}
        for i, g in enumerate(groups):
            if i == 1 or (i > 1 and rng.random() < 0.5):
                add("group", groups[0 if i == 1 else rng.randrange(i)], "member", "group", g, "member")
            members[g] = rng.sample(users, 5)
            for u in members[g]:
                add("group", g, "member", "user", u)
        # readers of the whole tree: groups[0], groups[1] inside it; `blk` reads through
        # groups[0] and is blocked (through groups[-1]) on one branch
        blk = f"t{t}blk"
        add("group", groups[0], "member", "user", blk)
        add("group", groups[-1], "member", "user", blk)
        add("node", f"t{t}n0", "viewer", "group", groups[0], "member")
        root_reader = members[groups[0]][0]
        nested_reader = members[groups[1]][0]
        level = [f"t{t}n0"]
        parent: dict[str, str] = {}
        chain = {level[0]}  # the first node of every level: where the exclusions are
        count = 1
        for d in range(1, self.depth):
            nxt = []
            for p in level:
                for _ in range(2 if d < 7 else 1):
                    nid = f"t{t}n{count}"
                    count += 1
                    nxt.append(nid)
                    parent[nid] = p
                    add("node", nid, "parent", "node", p)
                    if rng.random() < 0.2:
                        add("node", nid, "viewer", "user", rng.choice(users[:-1]))
            level = nxt
            hit = level[0]
            chain.add(hit)
            add("node", hit, "blocked", "user", root_reader)
            self.label("denied_blocked", ("node", hit, "view", "user", root_reader, "", False))
            if d == 6:
                add("node", hit, "blocked", "group", groups[-1], "member")
            if d >= 6:
                self.label("denied_group_blocked", ("node", hit, "view", "user", blk, "", False))
        viewer = users[-1]
        for leaf in level:
            node, clear = leaf, True
            while node in parent:
                if node in chain:
                    clear = False
                node = parent[node]
            if not clear:
                continue  # below an exclusion of root_reader's
            add("node", leaf, "viewer", "user", viewer)
            if viewer not in members[groups[-1]] and viewer != root_reader:
                self.label("direct", ("node", leaf, "view", "user", viewer, "", True))
            self.label("deep_inherited", ("node", leaf, "view", "user", root_reader, "", True))
            self.label("via_group", ("node", leaf, "view", "user", nested_reader, "", True))
            if t > 0:
                self.label(
                    "denied_outsider", ("node", leaf, "view", "user", f"t{t - 1}u{len(users) - 2}", "", False)
                )

    def build(self) -> ShapeData:
        t = 0
        while len(self.rels) < self.target * 0.97 or t < 2:
            self.tree(t)
            t += 1
        want = min(BIG, max(1, self.target // 10))
        add = self.add
        add("group", "big", "member", "user", "big_reader")
        n = 0
        for t2 in range(t):
            if n >= want:
                break
            add("node", f"t{t2}n0", "viewer", "group", "big", "member")
            n += 1
        self.data.lookup_resources.append(("node", "view", "user", "big_reader", -1))
        self.data.lookup_subjects.append(("node", "t0n1", "view", "user", -1))
        return self.data


def generate(shape: str, size: int, seed: int) -> ShapeData:
    """The dataset of `shape` with about `size` relationships, deterministic by seed."""
    builders = {"docs": _Docs, "github": _Github, "hierarchy": _Hierarchy}
    if shape not in builders:
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    return builders[shape](size, seed).build()
