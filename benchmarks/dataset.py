"""Seeded benchmark datasets in the shapes of the collaboration model.

A dataset is a list of relationships plus labelled query sets. It is built organization by
organization until the requested relationship count is reached, so every size has the same
shapes: users in nested teams (chains up to :data:`MAX_TEAM_DEPTH` deep), organizations with
an owner, admins and members, custom roles, apps granted directly to users, to teams (often
the top of a deep chain), to roles and inherited from the organization, link-shared and
published apps, and runs and builds under apps.

Queries are labelled by how the answer is reached (``shallow`` = one relationship, ``deep``
= through the deepest team chain and an arrow, ``org`` = inherited from the organization,
``denied_*`` = no path, the whole graph reachable from the resource is explored).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from stonetown.core.relationship import Relationship

SCHEMA_PATH = Path(__file__).with_name("schema.zed")
MAX_TEAM_DEPTH = 8
SEED = 20261123

SIZES: dict[str, int] = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}


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


Check = tuple[str, str, str, str, str, str]  # resource type, id, permission, subject type, id, relation


@dataclass(slots=True)
class Dataset:
    """Relationships and labelled queries generated from one seed."""

    size: int
    seed: int
    relationships: list[Relationship] = field(default_factory=list)
    checks: dict[str, list[Check]] = field(default_factory=dict)
    # (resource_type, permission, subject) for LookupResources, with a big expected answer
    lookup_resources: list[tuple[str, str, str]] = field(default_factory=list)
    # (resource type, id, permission, subject type) for LookupSubjects
    lookup_subjects: list[tuple[str, str, str, str]] = field(default_factory=list)
    # relationships not in the dataset, to be written by the write workloads
    fresh_writes: list[Relationship] = field(default_factory=list)
    orgs: int = 0
    users: int = 0
    deepest_chain: int = 0

    def schema_text(self) -> str:
        """The schema the dataset is written against."""
        return SCHEMA_PATH.read_text()


class _Builder:
    """Generates one organization at a time."""

    def __init__(self, seed: int, target: int) -> None:
        self.rng = random.Random(seed)
        self.target = target
        self.rels: list[Relationship] = []
        self.checks: dict[str, list[Check]] = {
            "shallow_allowed": [],
            "deep_allowed": [],
            "org_allowed": [],
            "role_allowed": [],
            "run_deep_allowed": [],
            "denied_shallow": [],
            "denied_deep": [],
        }
        self.lookup_resources: list[tuple[str, str, str]] = []
        self.lookup_subjects: list[tuple[str, str, str, str]] = []
        self.user_pool = max(60, target // 25)
        self.org_count = 0
        self.deepest = 0

    def add(self, rtype: str, rid: str, rel: str, stype: str, sid: str, srel: str = "") -> None:
        self.rels.append(Relationship(rtype, rid, rel, stype, sid, srel))

    def org(self) -> None:  # noqa: PLR0915 - one straight recipe
        rng, n = self.rng, self.org_count
        self.org_count += 1
        org = f"o{n}"
        users = [f"u{i}" for i in rng.sample(range(self.user_pool), min(100, self.user_pool))]
        owner, admins, members = users[0], users[1:4], users[4:]
        self.add("organization", org, "owner", "user", owner)
        for u in admins:
            self.add("organization", org, "admin", "user", u)
        for u in members:
            self.add("organization", org, "member", "user", u)
        # teams: 4 chains of depth 1..MAX_TEAM_DEPTH (chain[0] innermost) plus flat teams
        chains: list[list[str]] = []
        team_no = 0
        for depth in (MAX_TEAM_DEPTH, 5, 3, 2):
            chain = []
            for _ in range(depth):
                team = f"{org}t{team_no}"
                team_no += 1
                self.add("team", team, "org", "organization", org)
                if chain:
                    self.add("team", team, "direct_member", "team", chain[-1], "member")
                chain.append(team)
            chains.append(chain)
        flat = []
        for _ in range(12):
            team = f"{org}t{team_no}"
            team_no += 1
            self.add("team", team, "org", "organization", org)
            flat.append(team)
        all_teams = [t for chain in chains for t in chain] + flat
        team_users: dict[str, list[str]] = {}
        for team in all_teams:
            chosen = rng.sample(members, 6)
            team_users[team] = chosen
            self.add("team", team, "maintainer", "user", chosen[0])
            for u in chosen[1:]:
                self.add("team", team, "direct_member", "user", u)
        self.deepest = max(self.deepest, MAX_TEAM_DEPTH)
        # roles
        roles = []
        role_users: dict[str, list[str]] = {}
        for r in range(4):
            role = f"{org}r{r}"
            roles.append(role)
            self.add("role", role, "org", "organization", org)
            role_users[role] = rng.sample(members, 5)
            for u in role_users[role]:
                self.add("role", role, "assignee", "user", u)
            self.add("role", role, "assignee", "team", rng.choice(flat), "member")
        # apps
        deep_chain = chains[0]
        apps = []
        for a in range(120):
            app = f"{org}a{a}"
            apps.append(app)
            self.add("app", app, "org", "organization", org)
            direct = rng.sample(members, 3)
            self.add("app", app, "runner", "user", direct[0])
            self.add("app", app, "editor", "user", direct[1])
            self.add("app", app, "manager", "user", direct[2])
            kind = a % 4
            if kind == 0:  # granted to the top of the deepest team chain
                self.add("app", app, "runner", "team", deep_chain[-1], "member")
            elif kind == 1:
                self.add("app", app, "editor", "team", rng.choice(all_teams), "member")
            elif kind == 2:
                granted_role = rng.choice(roles)
                self.add("app", app, "runner", "role", granted_role, "holder")
            else:
                self.add("app", app, "runner", "organization", org, "member")
            if a % 10 == 3:
                self.add("app", app, "link_shared", "user", "*")
            if a % 20 == 7:
                self.add("app", app, "published", "user", "*")
            for r in range(3):
                self.add("run", f"{app}x{r}", "app", "app", app)
            self.add("build", f"{app}b0", "app", "app", app)
            # queries
            if len(self.checks["shallow_allowed"]) < 4000:
                self.checks["shallow_allowed"].append(("app", app, "can_run", "user", direct[0], ""))
            if kind == 0:
                leaf = team_users[deep_chain[0]][1]
                self.checks["deep_allowed"].append(("app", app, "can_run", "user", leaf, ""))
                self.checks["run_deep_allowed"].append(("run", f"{app}x0", "view", "user", leaf, ""))
                outsider = f"u{rng.randrange(self.user_pool)}"
                if outsider not in users:
                    self.checks["denied_deep"].append(("app", app, "can_run", "user", outsider, ""))
            if kind == 2:
                holder = rng.choice(role_users[granted_role])
                self.checks["role_allowed"].append(("app", app, "can_run", "user", holder, ""))
            self.checks["org_allowed"].append(("app", app, "can_manage", "user", rng.choice(admins), ""))
            if kind != 0 and a % 10 not in (3,) and a % 20 != 7:
                self.checks["denied_shallow"].append(("app", app, "can_manage", "user", direct[0], ""))
        self.lookup_resources.append(("app", "can_run", owner))
        self.lookup_subjects.append(("app", apps[0], "can_run", "user"))

    def build(self) -> Dataset:
        while len(self.rels) < self.target:
            self.org()
        fresh = [
            Relationship("app", f"fresh{i}", "runner", "user", f"u{self.rng.randrange(self.user_pool)}")
            for i in range(20000)
        ]
        data = Dataset(self.target, 0, self.rels, self.checks, self.lookup_resources, self.lookup_subjects)
        data.fresh_writes = fresh
        data.orgs = self.org_count
        data.users = self.user_pool
        data.deepest_chain = self.deepest
        return data


def generate(size: int, seed: int = SEED) -> Dataset:
    """The dataset of about `size` relationships (whole organizations, at least `size`)."""
    data = _Builder(seed, size).build()
    data.seed = seed
    for name, items in data.checks.items():
        random.Random(seed + len(name)).shuffle(items)
        data.checks[name] = items[:5000]
    return data


def big_lookup(size: int, seed: int = SEED) -> Dataset:
    """A dataset where one user can run at least 10,000 apps (for the LookupResources target):
    the user is in the innermost team of a deep chain and the chain top is granted on each app."""
    data = generate(size, seed)
    extra: list[Relationship] = []
    chain = [f"big{t}" for t in range(MAX_TEAM_DEPTH)]
    for below, above in zip(chain, chain[1:], strict=False):
        extra.append(Relationship("team", above, "direct_member", "team", below, "member"))
    extra.append(Relationship("team", chain[0], "direct_member", "user", "bigreader"))
    for i in range(10_000):
        extra.append(Relationship("app", f"bigapp{i}", "runner", "team", chain[-1], "member"))
    data.relationships.extend(extra)
    data.lookup_resources.insert(0, ("app", "can_run", "bigreader"))
    return data
