"""Run OpenFGA's matrix tests (`assets/tests/*.yaml`: consolidated_1_1_tests, abac_tests).

Each test has stages run on one store: a stage writes a new model and more tuples (tuples
accumulate), then asserts check / listObjects / listUsers answers or error codes. With
``contextual=True`` the stage's tuples are not written but sent as contextual tuples of every
request (upstream runs every single-stage test that way too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stonetown.fgatest.conditions import ConditionsUnavailable
from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple

KINDS = ("check", "list_objects", "list_users")
_SECTIONS = {
    "checkAssertions": "check",
    "listObjectsAssertions": "list_objects",
    "listUsersAssertions": "list_users",
}


@dataclass(frozen=True)
class Outcome:
    """One assertion's result. ``kind`` is check / list_objects / list_users; ``expected`` and
    ``got`` are a bool, a sorted list of strings, or `error <code>`. ``pending`` holds the
    reason when the assertion could not be evaluated in this build (conditions)."""

    test: str
    stage: int
    kind: str
    position: int
    request: str
    expected: Any
    got: Any
    expects_error: bool
    pending: str | None = None

    @property
    def passed(self) -> bool:
        """Whether the answer matched (never for pending ones)."""
        return self.pending is None and self.expected == self.got

    @property
    def ident(self) -> str:
        """A stable name: `test[stage].kind#position`."""
        return f"{self.test}[{self.stage}].{self.kind}#{self.position}"

    def describe(self) -> str:
        """One line: where, the request, expected and got."""
        return f"{self.ident} {self.request}: expected {self.expected!r}, got {self.got!r}"


def load_tests(path: Path) -> list[dict[str, Any]]:
    """The `tests` list of a matrix file."""
    with path.open() as fh:
        return list(yaml.safe_load(fh)["tests"])


def is_single_stage(test: Mapping[str, Any]) -> bool:
    """Tests upstream also runs with all tuples as contextual tuples."""
    return len(test["stages"]) == 1


def _users_list(value: Any) -> list[str]:
    return sorted(str(v) for v in value or [])


def _describe_request(kind: str, assertion: Mapping[str, Any]) -> str:
    req = assertion.get("tuple") if kind == "check" else assertion.get("request")
    parts = [f"{k}={v}" for k, v in (req or {}).items()]
    if assertion.get("context"):
        parts.append(f"context={assertion['context']}")
    if assertion.get("contextualTuples"):
        parts.append(f"contextual={len(assertion['contextualTuples'])}")
    return f"{kind}(" + ", ".join(parts) + ")"


def _answer(store: FgaStore, kind: str, assertion: Mapping[str, Any], extra: list[FgaTuple]) -> Any:
    contextual = [FgaTuple.from_mapping(t) for t in assertion.get("contextualTuples") or []] + extra
    context = assertion.get("context") or None
    if kind == "check":
        tup = assertion["tuple"]
        return store.check(tup["object"], tup["relation"], tup["user"], contextual, context)
    req = assertion["request"]
    if kind == "list_objects":
        return sorted(store.list_objects(req["user"], req["type"], req["relation"], contextual, context))
    return sorted(store.list_users(req["object"], req["relation"], list(req["filters"]), contextual, context))


def run_test(test: Mapping[str, Any], contextual: bool = False) -> Iterator[Outcome]:
    """Run one matrix test, yielding an outcome per assertion."""
    store = FgaStore()
    name = str(test["name"])
    for stage_no, stage in enumerate(test["stages"]):
        store.write_model(stage["model"])
        tuples = [FgaTuple.from_mapping(t) for t in stage.get("tuples") or []]
        extra: list[FgaTuple] = []
        if contextual:
            extra = tuples
        elif tuples:
            store.write_tuples(tuples)
        for section, kind in _SECTIONS.items():
            for position, assertion in enumerate(stage.get(section) or []):
                expects_error = "errorCode" in assertion
                if expects_error:
                    expected: Any = f"error {assertion['errorCode']}"
                elif kind == "check":
                    expected = bool(assertion.get("expectation"))
                else:
                    expected = _users_list(assertion.get("expectation"))
                pending = None
                try:
                    got: Any = _answer(store, kind, assertion, extra)
                except FgaRequestError as exc:
                    got = f"error {exc.code}"
                except ConditionsUnavailable as exc:
                    got, pending = None, str(exc)
                yield Outcome(
                    name,
                    stage_no,
                    kind,
                    position,
                    _describe_request(kind, assertion),
                    expected,
                    got,
                    expects_error,
                    pending,
                )


def run_file(path: Path, contextual: bool = False) -> list[Outcome]:
    """Every outcome of a matrix file (with ``contextual``, single-stage tests only)."""
    outcomes: list[Outcome] = []
    for test in load_tests(path):
        if contextual and not is_single_stage(test):
            continue
        outcomes.extend(run_test(test, contextual))
    return outcomes


def summarize(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    """(passed, total) per kind, plus `error` for assertions expecting an error code and
    `pending` (passed counts as 0) for those that could not run."""
    table: dict[str, list[int]] = {k: [0, 0] for k in (*KINDS, "error", "pending")}
    for outcome in outcomes:
        if outcome.pending is not None:
            table["pending"][1] += 1
            continue
        key = "error" if outcome.expects_error else outcome.kind
        table[key][1] += 1
        table[key][0] += int(outcome.passed)
    return {k: (v[0], v[1]) for k, v in table.items()}


def format_summary(label: str, outcomes: list[Outcome]) -> str:
    """`label: check 10/10, list_objects .., list_users .., error codes .., pending N`."""
    table = summarize(outcomes)
    parts = [f"{k} {table[k][0]}/{table[k][1]}" for k in KINDS]
    parts.append(f"error codes {table['error'][0]}/{table['error'][1]}")
    parts.append(f"pending {table['pending'][1]}")
    return f"{label}: " + ", ".join(parts)
