"""Seeded benchmark datasets over the collaboration model (schema/collaboration.zed).

A dataset is a list of relationships plus labelled queries. It is built organization by
organization until the requested relationship count is reached, so every size has the same
shapes: organizations with an owner, admins and members (some through teams), nested teams
(chains up to :data:`MAX_TEAM_DEPTH` deep), custom roles with `grants_*` flags, apps granted
directly to users, to teams (often the top of the deepest chain) and to roles, inherited
from the organization, published apps, runs and builds under apps (some link-shared), and
storages produced by runs; plus personal (user-owned) apps with account link defaults.

Query labels say how the answer is reached:
- ``direct``: the subject is granted on the app by one relationship (``runner@user``);
- ``deep_team``: through the deepest team chain (8 nested teams) to a grant on the app;
- ``deep_run``: a run viewed through ``app->view_results`` and the deepest team chain;
- ``org_admin``: ``manage`` inherited from the organization's admins;
- ``role``: ``run`` through ``org->run_apps`` and a custom role's ``grants_run`` flag;
- ``denied_outsider`` / ``denied_member``: no path; the whole graph reachable from the
  resource is explored (the most expensive kind of answer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from stonetown.core.relationship import Relationship

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "collaboration.zed"
MAX_TEAM_DEPTH = 8
SEED = 20261123

SIZES: dict[str, int] = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}

# resource type, resource id, permission, subject type, subject id, subject relation, expected
Check = tuple[str, str, str, str, str, str, bool]

CHECK_KINDS = ("direct", "deep_team", "deep_run", "org_admin", "role", "denied_outsider", "denied_member")


def parse_size(text: str) -> int:
    """`10k`, `1M`, `250000` -> a relationship count."""
    if text in SIZES:
        return SIZES[text]
    lowered = text.lower()
    for suffix, factor in (("k", 1_000), ("m", 1_000_000)):
        if lowered.endswith(suffix):
            return int(float(lowered[:-1]) * factor)
    return int(text)


def size_label(count: int) -> str:
    """The short label of a relationship count (`100k`, `1M`)."""
    for label, value in SIZES.items():
        if value == count:
            return label
    return str(count)


@dataclass(slots=True)
class Dataset:
    """Relationships and labelled queries generated from one seed."""

    size: int
    seed: int
    relationships: list[Relationship] = field(default_factory=list)
    checks: dict[str, list[Check]] = field(default_factory=dict)
    # (resource type, permission, subject id) for LookupResources; the first one is big
    lookup_resources: list[tuple[str, str, str]] = field(default_factory=list)
    # (resource type, id, permission, subject type) for LookupSubjects
    lookup_subjects: list[tuple[str, str, str, str]] = field(default_factory=list)
    # relationships not in the dataset, for the write workloads
    fresh_writes: list[Relationship] = field(default_factory=list)
    # the RBAC-with-domains part, for the pycasbin comparison:
    # (domain, subject, role) links and (subject, domain, object, action) grants
    casbin_links: list[tuple[str, str, str]] = field(default_factory=list)
    casbin_grants: list[tuple[str, str, str, str]] = field(default_factory=list)
    orgs: int = 0
    users: int = 0
    big_lookup: int = 0

    def schema_text(self) -> str:
        """The schema the dataset is written against."""
        return SCHEMA_PATH.read_text()

    def mixed_checks(self, count: int, seed: int | None = None) -> list[Check]:
        """`count` checks drawn round-robin over every kind, shuffled (the Check mix)."""
        rng = random.Random(self.seed if seed is None else seed)
        pools = [items for items in self.checks.values() if items]
        out: list[Check] = []
        while len(out) < count:
            for pool in pools:
                out.append(pool[rng.randrange(len(pool))])
        rng.shuffle(out)
        return out[:count]

    def distinct_checks(self, seed: int | None = None) -> list[Check]:
        """Every labelled check once, shuffled: no request repeats, so a whole-check cache
        cannot answer any of them (the honest, uncached Check mix)."""
        out = sorted({c for items in self.checks.values() for c in items})
        random.Random(self.seed if seed is None else seed).shuffle(out)
        return out


_LEVELS = {"runner": ("run",), "editor": ("run", "edit"), "manager": ("run", "edit", "manage")}


class _Builder:
    """Generates one organization at a time."""

    def __init__(self, seed: int, target: int) -> None:
        self.rng = random.Random(seed)
        self.target = target
        self.rels: list[Relationship] = []
        self.linked_owners: set[str] = set()
        self.checks: dict[str, list[Check]] = {kind: [] for kind in CHECK_KINDS}
        self.lookup_resources: list[tuple[str, str, str]] = []
        self.lookup_subjects: list[tuple[str, str, str, str]] = []
        self.links: list[tuple[str, str, str]] = []
        self.grants: list[tuple[str, str, str, str]] = []
        self.user_pool = max(200, target // 20)
        self.org_count = 0
        self.big = 0

    def add(self, rtype: str, rid: str, rel: str, stype: str, sid: str, srel: str = "") -> None:
        self.rels.append(Relationship(rtype, rid, rel, stype, sid, srel))

    def grant(self, org: str, app: str, level: str, subject: str) -> None:
        """Record an app grant in casbin form (the implied lower levels spelled out)."""
        for action in _LEVELS[level]:
            self.grants.append((subject, org, app, action))

    def big_reader(self) -> None:
        """One user in the innermost team of a deep chain whose top is granted Can Run on
        min(10,000, size/10) apps: the first LookupResources query returns all of them."""
        chain = [f"bigt{t}" for t in range(MAX_TEAM_DEPTH)]
        for below, above in zip(chain, chain[1:], strict=False):
            self.add("team", above, "member", "team", below, "member")
        self.add("team", chain[0], "member", "user", "bigreader")
        self.big = min(10_000, self.target // 10)
        for i in range(self.big):
            self.add("app", f"bigapp{i}", "runner", "team", chain[-1], "member")
        self.lookup_resources.append(("app", "run", "bigreader"))

    def org(self) -> None:
        rng, n = self.rng, self.org_count
        self.org_count += 1
        org = f"o{n}"
        users = [f"u{i}" for i in rng.sample(range(self.user_pool), 100)]
        owner, admins, members, outsiders_from = users[0], users[1:4], users[4:70], users[70:]
        self.add("organization", org, "owner", "user", owner)
        self.links.append((org, owner, f"admin@{org}"))
        for u in admins:
            self.add("organization", org, "admin", "user", u)
            self.links.append((org, u, f"admin@{org}"))
        for u in members:
            self.add("organization", org, "member", "user", u)
        if n % 3 == 0:
            self.add("organization", org, "default_link", "user", "*")
        # teams: chains of depth 8, 5, 3, 2 (chain[0] innermost) and flat teams
        chains: list[list[str]] = []
        team_no = 0
        for depth in (MAX_TEAM_DEPTH, 5, 3, 2):
            chain: list[str] = []
            for _ in range(depth):
                team = f"{org}t{team_no}"
                team_no += 1
                if chain:
                    self.add("team", team, "member", "team", chain[-1], "member")
                    self.links.append((org, chain[-1], team))
                chain.append(team)
            chains.append(chain)
        flat = [f"{org}t{team_no + i}" for i in range(10)]
        all_teams = [t for chain in chains for t in chain] + flat
        team_users: dict[str, list[str]] = {}
        for team in all_teams:
            team_users[team] = rng.sample(members, 5)
            for u in team_users[team]:
                self.add("team", team, "member", "user", u)
                self.links.append((org, u, team))
        # the users of one chain (not directly members) belong through their top team
        for u in outsiders_from[:10]:
            self.add("team", chains[1][0], "member", "user", u)
        self.add("organization", org, "member", "team", chains[1][-1], "member")
        # custom roles: 0 grants run, 1 grants edit, 2 and 3 are used for per-app grants
        roles = [f"{org}r{r}" for r in range(4)]
        role_users: dict[str, list[str]] = {}
        for r, role in enumerate(roles):
            self.add("organization", org, "role", "role", role)
            self.add("role", role, "org", "organization", org)
            role_users[role] = rng.sample(members, 4)
            for u in role_users[role]:
                self.add("role", role, "holder", "user", u)
                self.links.append((org, u, role))
            if r == 0:
                self.add("role", role, "grants_run", "user", "*")
            elif r == 1:
                self.add("role", role, "grants_edit", "user", "*")
        self.add("role", roles[2], "holder", "team", rng.choice(flat), "member")
        # apps
        deep_top, deep_leaf = chains[0][-1], chains[0][0]
        apps = [f"{org}a{a}" for a in range(110)]
        for a, app in enumerate(apps):
            self.add("app", app, "account", "organization", org)
            for action in ("run", "edit", "manage"):
                self.grants.append((f"admin@{org}", org, app, action))
            direct = rng.sample(members, 3)
            for level, user in zip(("runner", "editor", "manager"), direct, strict=True):
                self.add("app", app, level, "user", user)
                self.grant(org, app, level, user)
            kind = a % 4
            if kind == 0:
                self.add("app", app, "runner", "team", deep_top, "member")
                self.grant(org, app, "runner", deep_top)
            elif kind == 1:
                team = rng.choice(all_teams)
                self.add("app", app, "editor", "team", team, "member")
                self.grant(org, app, "editor", team)
            elif kind == 2:
                role = rng.choice(roles[2:])
                self.add("app", app, "runner", "role", role, "member")
            if a % 25 == 7:
                self.add("app", app, "published", "user", "*")
            for r in range(3):
                run = f"{app}x{r}"
                self.add("run", run, "app", "app", app)
                self.add("run", run, "started_by", "user", rng.choice(direct))
                if r == 2 and a % 5 == 0:
                    self.add("run", run, "link_shared", "user", "*")
            self.add("build", f"{app}b0", "app", "app", app)
            if a % 10 == 0:
                self.add("storage", f"{app}s0", "produced_by", "run", f"{app}x0")
            # queries
            leaf_user = team_users[deep_leaf][a % 5]
            self.checks["direct"].append(("app", app, "run", "user", direct[0], "", True))
            self.checks["org_admin"].append(("app", app, "manage", "user", admins[a % 3], "", True))
            self.checks["role"].append(("app", app, "run", "user", role_users[roles[0]][a % 4], "", True))
            if kind == 0:
                self.checks["deep_team"].append(("app", app, "run", "user", leaf_user, "", True))
                self.checks["deep_run"].append(("run", f"{app}x0", "view", "user", leaf_user, "", True))
            if a % 25 != 7:
                outsider = f"u{rng.randrange(self.user_pool)}"
                if outsider not in users:
                    self.checks["denied_outsider"].append(("app", app, "run", "user", outsider, "", False))
            if kind == 3:
                plain = next(
                    u for u in members if u not in direct and all(u not in v for v in role_users.values())
                )
                self.checks["denied_member"].append(("app", app, "edit", "user", plain, "", False))
        # a few personal apps
        for p in range(5):
            app = f"{owner}p{n}x{p}"
            self.add("app", app, "owner", "user", owner)
            self.add("run", f"{app}x0", "app", "app", app)
        if n % 4 == 0 and owner not in self.linked_owners:  # owners repeat at 10M
            self.linked_owners.add(owner)
            self.add("user", owner, "default_link", "user", "*")
        self.lookup_resources.append(("app", "run", owner))
        self.lookup_subjects.append(("app", apps[0], "run", "user"))

    def build(self) -> Dataset:
        self.big_reader()
        while len(self.rels) < self.target:
            self.org()
        fresh = [
            Relationship("app", f"fresh{i}", "runner", "user", f"u{self.rng.randrange(self.user_pool)}")
            for i in range(50_000)
        ]
        data = Dataset(self.target, 0, self.rels, self.checks, self.lookup_resources, self.lookup_subjects)
        data.fresh_writes = fresh
        data.casbin_links = self.links
        data.casbin_grants = self.grants
        data.orgs = self.org_count
        data.users = self.user_pool
        data.big_lookup = self.big
        return data


def generate(size: int, seed: int = SEED) -> Dataset:
    """The dataset of about `size` relationships (whole organizations, at least `size`)."""
    data = _Builder(seed, size).build()
    data.seed = seed
    for name, items in data.checks.items():
        random.Random(seed + len(name)).shuffle(items)
        data.checks[name] = items[:5000]
    return data
