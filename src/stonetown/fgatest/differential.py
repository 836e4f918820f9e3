"""Differential testing against the real OpenFGA: random models, tuples and queries.

:class:`CaseGenerator` writes random OpenFGA models (nested union / intersection / exclusion,
arrows over tuplesets admitting several types, recursion through the model, definitions that
mix direct types with operators, wildcards, object and subject-set subjects), random tuples
(cycles in the data included) and Check, ListObjects and ListUsers queries, as one `.fga.yaml`
store test file. :func:`run_openfga` gets the real OpenFGA's answers with
`fga model test --tests FILE --verbose`; :func:`compare_case` replays every query through
:class:`~stonetown.fgatest.store.FgaStore` and lists the disagreements.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stonetown.core.errors import InvalidArgument
from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple

TYPE_POOL = ("group", "folder", "doc", "org", "team", "repo")

Expr = tuple[Any, ...]  # ("ref", rel) | ("arrow", tupleset, rel) | (op, child, child, ...)


@dataclass
class _Relation:
    name: str
    kind: str  # "direct" | "tupleset" | "perm"
    restrictions: list[str] = field(default_factory=list)  # `user`, `user:*`, `group`, `group#member`
    expr: Expr | None = None  # perms, and direct relations mixed with operators
    mix: str = "or"  # how a mixed direct relation joins its restrictions to `expr`


@dataclass
class Case:
    """One generated case: model text, tuples and queries (checks, list_objects, list_users)."""

    seed: int
    model: str
    tuples: list[FgaTuple]
    checks: list[tuple[str, str, str]]  # (object, relation, user)
    list_objects: list[tuple[str, str, str]]  # (user, type, relation)
    list_users: list[tuple[str, str, str]]  # (object, relation, filter `type` or `type#rel`)

    def store_file(self) -> str:
        """The case as a `.fga.yaml` store test file whose expectations are placeholders."""
        doc: dict[str, Any] = {
            "name": f"differential seed {self.seed}",
            "model": self.model,
            "tuples": [{"user": t.user, "relation": t.relation, "object": t.object} for t in self.tuples],
        }
        test: dict[str, Any] = {"name": "queries"}
        test["check"] = [
            {"user": user, "object": obj, "assertions": {rel: True}} for obj, rel, user in self.checks
        ]
        test["list_objects"] = [
            {"user": user, "type": otype, "assertions": {rel: []}} for user, otype, rel in self.list_objects
        ]
        test["list_users"] = [
            {
                "object": obj,
                "user_filter": [_filter_entry(flt)],
                "assertions": {rel: {"users": []}},
            }
            for obj, rel, flt in self.list_users
        ]
        doc["tests"] = [test]
        return yaml.safe_dump(doc, sort_keys=False, width=1000)


def _filter_entry(flt: str) -> dict[str, str]:
    ftype, _, frel = flt.partition("#")
    return {"type": ftype, "relation": frel} if frel else {"type": ftype}


class CaseGenerator:
    """Random cases from one seed (see module docstring). Bigger `scale` means more types,
    relations, objects and tuples."""

    def __init__(self, seed: int, scale: int = 1) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.scale = max(1, scale)
        self.types: list[str] = []
        self.defs: dict[str, list[_Relation]] = {}
        self.chain: tuple[str, str, int] | None = None

    # ---- model ---------------------------------------------------------------------------

    def _build_model(self) -> None:
        rng = self.rng
        self.types = rng.sample(TYPE_POOL, rng.randint(2, min(len(TYPE_POOL), 3 + self.scale)))
        self.defs = {t: [] for t in self.types}
        for t in self.types:
            for i in range(rng.randint(1, 3)):
                self.defs[t].append(_Relation(f"r{i}", "direct"))
            if rng.random() < 0.8:
                targets = rng.sample(self.types, rng.randint(1, min(2, len(self.types))))
                self.defs[t].append(_Relation("parent", "tupleset", targets))
            for i in range(rng.randint(1, 3)):
                self.defs[t].append(_Relation(f"p{i}", "perm"))
        for t in self.types:
            for rel in self.defs[t]:
                if rel.kind == "direct":
                    rel.restrictions = self._restrictions(t, rel.name)
        for t in self.types:
            for rel in self.defs[t]:
                if rel.kind == "perm":
                    rel.expr = self._expr(t, rel.name, 0)
                elif rel.kind == "direct" and rng.random() < 0.25:
                    rel.expr = self._expr(t, rel.name, 1)
                    rel.mix = rng.choice(["or", "or", "and", "but not"])

    def _names(self, t: str, kinds: tuple[str, ...] = ("direct", "perm")) -> list[str]:
        return [r.name for r in self.defs[t] if r.kind in kinds]

    def _restrictions(self, t: str, name: str) -> list[str]:
        rng = self.rng
        specs: list[str] = []
        if rng.random() < 0.85:
            specs.append("user")
        if rng.random() < 0.3:
            specs.append("user:*")
        if rng.random() < 0.25:
            specs.append(f"{t}#{name}")  # recursion through the data: groups of groups
        for _ in range(rng.choice([0, 1, 1, 2])):
            other = rng.choice(self.types)
            if rng.random() < 0.2:
                spec = other
            else:
                spec = f"{other}#{rng.choice(self._names(other))}"
            if spec not in specs:
                specs.append(spec)
        return specs or ["user"]

    def _leaf(self, t: str, own: str) -> Expr:
        rng = self.rng
        # refer to direct relations and to permissions defined earlier; later ones rarely
        # (OpenFGA refuses most cycles between permissions)
        names = [r.name for r in self.defs[t] if r.kind == "direct" and r.name != own]
        for rel in self.defs[t]:
            if rel.name == own:
                break
            if rel.kind == "perm":
                names.append(rel.name)
        if rng.random() < 0.1:
            names = [n for n in self._names(t) if n != own]
        choices: list[Expr] = [("ref", n) for n in names]
        for rel in self.defs[t]:
            if rel.kind == "tupleset":
                common = set(self._names(rel.restrictions[0]))
                for target in rel.restrictions[1:]:
                    common &= set(self._names(target))
                for name in sorted(common):
                    choices.append(("arrow", rel.name, name))
                    choices.append(("arrow", rel.name, name))
        return rng.choice(choices) if choices else ("ref", own)

    def _expr(self, t: str, own: str, depth: int) -> Expr:
        rng = self.rng
        if depth >= 3 or rng.random() < 0.3 + 0.2 * depth:
            return self._leaf(t, own)
        op = rng.choice(["union", "union", "inter", "excl"])
        if op == "excl":
            base, subtract = self._expr(t, own, depth + 1), self._expr(t, own, depth + 1)
            return ("excl", base, subtract) if base != subtract else base
        children: list[Expr] = []
        for _ in range(rng.randint(2, 3)):
            child = self._expr(t, own, depth + 1)
            if child not in children:  # OpenFGA's validator refuses duplicated operands
                children.append(child)
        return (op, *children) if len(children) > 1 else children[0]

    def model_text(self) -> str:
        """The model in OpenFGA DSL."""
        out = ["model", "  schema 1.1", "", "type user"]
        for t in self.types:
            out += ["", f"type {t}", "  relations"]
            for rel in self.defs[t]:
                if rel.kind == "tupleset":
                    out.append(f"    define {rel.name}: [{', '.join(rel.restrictions)}]")
                elif rel.kind == "direct":
                    direct = f"[{', '.join(rel.restrictions)}]"
                    if rel.expr is not None:
                        direct += f" {rel.mix} {_render(rel.expr, nested=True)}"
                    out.append(f"    define {rel.name}: {direct}")
                else:
                    assert rel.expr is not None
                    out.append(f"    define {rel.name}: {_render(rel.expr, nested=False)}")
        return "\n".join(out) + "\n"

    # ---- data and queries ----------------------------------------------------------------

    def case(self) -> Case:
        """Generate the case for this seed."""
        rng = self.rng
        self._build_model()
        n_objects = rng.randint(2, 3 + 2 * self.scale)
        n_users = rng.randint(2, 3 + 2 * self.scale)
        tuples: dict[tuple[str, str, str], FgaTuple] = {}
        target = rng.randint(5, 25 * self.scale)
        for _ in range(target * 4):
            if len(tuples) >= target:
                break
            t = rng.choice(self.types)
            rels = [r for r in self.defs[t] if r.kind in ("direct", "tupleset")]
            rel = rng.choice(rels)
            obj = f"{t}:o{rng.randrange(n_objects)}"
            spec = rng.choice(rel.restrictions)
            if spec == "user":
                user = f"user:u{rng.randrange(n_users)}"
            elif spec == "user:*":
                if rng.random() < 0.5:
                    continue
                user = "user:*"
            elif "#" in spec:
                stype, _, srel = spec.partition("#")
                user = f"{stype}:o{rng.randrange(n_objects)}#{srel}"
            else:
                user = f"{spec}:o{rng.randrange(n_objects)}"
            if user == f"{obj}#{rel.name}":
                continue  # OpenFGA refuses to store a tuple that is implicit
            tup = FgaTuple(obj, rel.name, user)
            tuples[tup.key] = tup
        if rng.random() < 0.3:
            self._chain(tuples, n_users)
        queries = 20 + 20 * self.scale
        checks: set[tuple[str, str, str]] = set()
        for _ in range(queries * 2):
            t = rng.choice(self.types)
            user = self._query_user(n_objects, n_users)
            checks.add((f"{t}:o{rng.randrange(n_objects + 1)}", rng.choice(self._names(t)), user))
        if self.chain is not None:
            t, name, length = self.chain
            for i in (0, 1, length // 2):
                for j in range(n_users + 1):
                    checks.add((f"{t}:c{i}", name, f"user:u{j}"))
        lobjects: set[tuple[str, str, str]] = set()
        for _ in range(queries // 2):
            t = rng.choice(self.types)
            lobjects.add((self._query_user(n_objects, n_users), t, rng.choice(self._names(t))))
        lusers: set[tuple[str, str, str]] = set()
        if self.chain is not None:
            lusers.add((f"{self.chain[0]}:c0", self.chain[1], "user"))
            lobjects.update((f"user:u{j}", self.chain[0], self.chain[1]) for j in range(n_users))
        for _ in range(queries // 2):
            t = rng.choice(self.types)
            if rng.random() < 0.7:
                flt = "user"
            else:
                other = rng.choice(self.types)
                flt = rng.choice([other, f"{other}#{rng.choice(self._names(other))}"])
            lusers.add((f"{t}:o{rng.randrange(n_objects)}", rng.choice(self._names(t)), flt))
        return Case(
            self.seed,
            self.model_text(),
            sorted(tuples.values(), key=lambda x: x.key),
            sorted(checks),
            sorted(lobjects),
            sorted(lusers),
        )

    def _chain(self, tuples: dict[tuple[str, str, str], FgaTuple], n_users: int) -> None:
        """A long chain of subject sets `t:c0#r <- t:c1#r <- ...` ending at a user, sometimes
        closed into a cycle, to exercise deep resolution (OpenFGA's depth limit is 25)."""
        rng = self.rng
        recursive = [
            (t, r.name)
            for t in self.types
            for r in self.defs[t]
            if r.kind == "direct" and f"{t}#{r.name}" in r.restrictions
        ]
        if not recursive:
            return
        t, name = rng.choice(recursive)
        length = rng.randint(5, 35)
        for i in range(length):
            tup = FgaTuple(f"{t}:c{i}", name, f"{t}:c{i + 1}#{name}")
            tuples[tup.key] = tup
        if "user" in next(r.restrictions for r in self.defs[t] if r.name == name):
            end = FgaTuple(f"{t}:c{length}", name, f"user:u{rng.randrange(n_users)}")
            tuples[end.key] = end
        if rng.random() < 0.3:
            back = FgaTuple(f"{t}:c{length}", name, f"{t}:c0#{name}")
            tuples[back.key] = back
        self.chain = (t, name, length)

    def _query_user(self, n_objects: int, n_users: int) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            return f"user:u{rng.randrange(n_users + 1)}"
        other = rng.choice(self.types)
        if roll < 0.85:
            return f"{other}:o{rng.randrange(n_objects)}"
        return f"{other}:o{rng.randrange(n_objects)}#{rng.choice(self._names(other))}"


def _render(expr: Expr, nested: bool) -> str:
    kind = expr[0]
    if kind == "ref":
        return str(expr[1])
    if kind == "arrow":
        return f"{expr[2]} from {expr[1]}"
    word = {"union": " or ", "inter": " and ", "excl": " but not "}[kind]
    text = word.join(_render(child, nested=True) for child in expr[1:])
    return f"({text})" if nested else text


# ---- running OpenFGA ---------------------------------------------------------------------


class OpenFgaUnavailable(RuntimeError):
    """The `fga` binary could not be found or did not produce results."""


def find_fga() -> str | None:
    """Path of the `fga` CLI: next to the running interpreter, or on PATH."""
    import sys

    beside = Path(sys.executable).parent / "fga"
    if beside.exists():
        return str(beside)
    return shutil.which("fga")


@dataclass
class Answers:
    """Answers per query; a value is a bool (check), a sorted list (lists) or "error"."""

    checks: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    list_objects: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    list_users: dict[tuple[str, str, str], Any] = field(default_factory=dict)


class OpenFgaTimeout(RuntimeError):
    """OpenFGA did not answer in time."""


def run_openfga(fga: str, case: Case, timeout: float = 30) -> Answers:
    """OpenFGA's answer to every query of `case` (model refused: OpenFgaUnavailable; no
    answer within `timeout` seconds: OpenFgaTimeout)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.fga.yaml"
        path.write_text(case.store_file())
        try:
            proc = subprocess.run(
                [fga, "model", "test", "--tests", str(path), "--verbose", "--suppress-summary"],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise OpenFgaTimeout(f"fga model test took more than {timeout}s") from None
    try:
        start = proc.stdout.index("[")
        results = json.JSONDecoder().raw_decode(proc.stdout[start:])[0][0]
    except (ValueError, IndexError, KeyError):
        raise OpenFgaUnavailable((proc.stdout + proc.stderr)[-600:]) from None
    answers = Answers()
    for item in results.get("check_results") or []:
        q = item["request"]
        answers.checks[(q["object"], q["relation"], q["user"])] = (
            "error" if item.get("error") is not None else bool(item["got"])
        )
    for item in results.get("list_objects_results") or []:
        q = item["request"]
        value = "error" if item.get("error") is not None else sorted(item.get("got") or [])
        answers.list_objects[(q["user"], q["type"], q["relation"])] = value
    for item in results.get("list_users_results") or []:
        q = item["request"]
        flt = q["user_filters"][0]
        key = (
            f"{q['object']['type']}:{q['object']['id']}",
            q["relation"],
            f"{flt['type']}#{flt['relation']}" if flt.get("relation") else flt["type"],
        )
        got = item.get("got") or {}
        answers.list_users[key] = "error" if item.get("error") is not None else sorted(got.get("users") or [])
    return answers


# ---- comparing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """One query where Stonetown and OpenFGA answered differently."""

    seed: int
    kind: str
    query: tuple[str, str, str]
    openfga: Any
    stonetown: Any

    def __str__(self) -> str:
        return (
            f"seed {self.seed} {self.kind}{self.query}: openfga={self.openfga!r} stonetown={self.stonetown!r}"
        )


def _ours(compute: Any) -> Any:
    try:
        value = compute()
    except FgaRequestError:
        return "error"
    return sorted(value) if isinstance(value, set) else value


def compare_case(case: Case, answers: Answers) -> tuple[int, list[Disagreement]]:
    """(queries compared, disagreements) for one case."""
    store = FgaStore()
    store.write_model(case.model)
    store.write_tuples(case.tuples)
    compared = 0
    found: list[Disagreement] = []
    for key, theirs in answers.checks.items():
        compared += 1
        ours = _ours(lambda k=key: store.check(*k))
        if ours != theirs:
            found.append(Disagreement(case.seed, "check", key, theirs, ours))
    for key, theirs in answers.list_objects.items():
        compared += 1
        ours = _ours(lambda k=key: store.list_objects(*k))
        if ours != theirs:
            found.append(Disagreement(case.seed, "list_objects", key, theirs, ours))
    for key, theirs in answers.list_users.items():
        compared += 1
        ours = _ours(lambda k=key: store.list_users(k[0], k[1], [k[2]]))
        if ours != theirs:
            found.append(Disagreement(case.seed, "list_users", key, theirs, ours))
    return compared, found


@dataclass
class RunStats:
    """Totals of a differential run."""

    cases: int = 0
    rejected_models: int = 0
    compared: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    model_disagreements: list[str] = field(default_factory=list)
    timeouts: list[int] = field(default_factory=list)


def run_seed(fga: str, seed: int, scale: int, stats: RunStats, timeout: float = 30) -> Case | None:
    """Generate, judge and compare one seed, adding to `stats`; returns the case if it ran."""
    case = CaseGenerator(seed, scale).case()
    try:
        FgaStore().write_model(case.model)
        ours_ok = True
    except InvalidArgument:
        ours_ok = False
    try:
        answers = run_openfga(fga, case, timeout)
        theirs_ok, reason = True, ""
    except OpenFgaUnavailable as exc:
        theirs_ok, reason = False, str(exc).strip().splitlines()[-1] if str(exc).strip() else "?"
    except OpenFgaTimeout:
        stats.timeouts.append(seed)
        return None
    if ours_ok != theirs_ok:
        stats.model_disagreements.append(
            f"seed {seed}: openfga accepts={theirs_ok}, stonetown accepts={ours_ok}"
            + ("" if theirs_ok else f" ({reason})")
        )
    if not (ours_ok and theirs_ok):
        stats.rejected_models += 1
        return None
    compared, found = compare_case(case, answers)
    stats.cases += 1
    stats.compared += compared
    stats.disagreements.extend(found)
    return case


def _check_queries(dis: Disagreement) -> list[tuple[str, str, str]]:
    """The checks (object, relation, user) behind a list disagreement: one per differing item."""
    if dis.kind == "check" or not isinstance(dis.openfga, list) or not isinstance(dis.stonetown, list):
        return []
    differing = sorted(set(dis.openfga) ^ set(dis.stonetown))
    if dis.kind == "list_objects":
        user, _otype, relation = dis.query
        return [(obj, relation, user) for obj in differing]
    obj, relation, _flt = dis.query
    # a wildcard stands for any user: probe it with an id no tuple names
    return [(obj, relation, user[:-1] + "zz-probe" if user.endswith(":*") else user) for user in differing]


def _unstable(fga: str, case: Case, found: list[Disagreement], reruns: int) -> set[int]:
    """Positions in `found` whose OpenFGA answer changes when the same queries are asked again."""
    probe = Case(
        case.seed,
        case.model,
        case.tuples,
        [d.query for d in found if d.kind == "check"],
        [d.query for d in found if d.kind == "list_objects"],
        [d.query for d in found if d.kind == "list_users"],
    )
    unstable: set[int] = set()
    for _ in range(reruns):
        again = run_openfga(fga, probe)
        tables = {"check": again.checks, "list_objects": again.list_objects, "list_users": again.list_users}
        for position, dis in enumerate(found):
            if tables[dis.kind].get(dis.query) != dis.openfga:
                unstable.add(position)
    return unstable


def classify(
    fga: str, case: Case, found: list[Disagreement], reruns: int = 5
) -> list[tuple[Disagreement, str]]:
    """Label each disagreement: `openfga-nondeterministic` when OpenFGA answers the same query
    differently when asked again (`reruns` times), `openfga-self-inconsistent` when OpenFGA's
    own Check agrees with Stonetown on every differing item of a list answer, else
    `stonetown-differs`."""
    labels: list[tuple[Disagreement, str]] = []
    unstable = _unstable(fga, case, found, reruns) if found else set()
    queries = sorted({q for dis in found for q in _check_queries(dis)})
    ours_by_query: dict[tuple[str, str, str], Any] = {}
    theirs: dict[tuple[str, str, str], Any] = {}
    if queries:
        probe = Case(case.seed, case.model, case.tuples, queries, [], [])
        theirs = run_openfga(fga, probe).checks
        store = FgaStore()
        store.write_model(case.model)
        store.write_tuples(case.tuples)
        ours_by_query = {q: _ours(lambda q=q: store.check(*q)) for q in queries}
    for position, dis in enumerate(found):
        checks = _check_queries(dis)
        agree = bool(checks) and all(theirs.get(q) == ours_by_query.get(q) for q in checks)
        if position in unstable:
            labels.append((dis, "openfga-nondeterministic"))
        else:
            labels.append((dis, "openfga-self-inconsistent" if agree else "stonetown-differs"))
    return labels
