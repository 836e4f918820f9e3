"""OpenFGA store test files (`.fga.yaml`, as run by `fga model test`).

Top level: ``model`` (DSL text) or ``model_file`` (`.fga` DSL, `.json`, or an `fga.mod` manifest
of a modular model whose files are read relative to it), ``tuples`` and/or
``tuple_file`` / ``tuple_files`` (yaml, json or csv), and ``tests``. Each test may add its own
tuples the same ways and holds:

* ``check``: ``user`` or ``users``, ``object`` or ``objects``, optional ``context``,
  ``assertions: {relation: bool}``;
* ``list_objects``: ``user``, ``type``, optional ``context``, ``assertions: {relation: [objects]}``;
* ``list_users``: ``object``, ``user_filter: [{type, relation?}]``, optional ``context``,
  ``assertions: {relation: {users: [...]}}``.

Every test runs on a fresh store holding the file's tuples and the test's. Relative file
names are resolved against the directory of the store file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stonetown.core.errors import InvalidArgument
from stonetown.fgatest.conditions import ConditionsUnavailable
from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple
from stonetown.schema.fga import import_fga_json, import_fga_modules, parse_fga_mod


class StoreFileError(Exception):
    """The file cannot be read or does not follow the store file format."""


@dataclass
class StoreFileReport:
    """What running one store file found: the number of assertions run and the failures."""

    path: Path
    assertions: int = 0
    failures: list[str] = field(default_factory=list)


def is_store_file(path: str | Path) -> bool:
    """Whether `path` names an OpenFGA store test file (`*.fga.yaml` / `*.fga.yml`)."""
    name = str(path)
    return name.endswith(".fga.yaml") or name.endswith(".fga.yml")


def _read_tuples_file(path: Path) -> list[FgaTuple]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise StoreFileError(f"{path}: {exc.strerror or exc}") from None
    if path.suffix == ".csv":
        return [_csv_tuple(row, path) for row in csv.DictReader(text.splitlines())]
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise StoreFileError(f"{path}: {exc}") from None
    return _tuples(data or [], str(path))


def _csv_tuple(row: Mapping[str, str], path: Path) -> FgaTuple:
    try:
        user = f"{row['user_type']}:{row['user_id']}"
        if row.get("user_relation"):
            user += f"#{row['user_relation']}"
        obj = f"{row['object_type']}:{row['object_id']}"
        relation = row["relation"]
    except KeyError as exc:
        raise StoreFileError(f"{path}: csv tuple file lacks column {exc}") from None
    name = row.get("condition_name") or None
    context = json.loads(row["condition_context"]) if row.get("condition_context") else {}
    return FgaTuple(obj, relation, user, name, tuple(sorted(context.items())) if name else ())


def _tuples(data: Any, where: str) -> list[FgaTuple]:
    if not isinstance(data, list):
        raise StoreFileError(f"{where}: tuples must be a list")
    out = []
    for item in data:
        if not isinstance(item, Mapping):
            raise StoreFileError(f"{where}: a tuple must be a mapping, got {item!r}")
        try:
            out.append(FgaTuple.from_mapping(item))
        except FgaRequestError as exc:
            raise StoreFileError(f"{where}: {exc.message}") from None
    return out


def _collect_tuples(section: Mapping[str, Any], base: Path, where: str) -> list[FgaTuple]:
    found = _tuples(section.get("tuples") or [], where)
    files: list[Any] = []
    if section.get("tuple_file"):
        files.append(section["tuple_file"])
    files.extend(section.get("tuple_files") or [])
    for name in files:
        found.extend(_read_tuples_file(base / str(name)))
    return found


def _load_model(store: FgaStore, data: Mapping[str, Any], base: Path) -> None:
    if "model" in data:
        store.write_model(str(data["model"]))
        return
    if "model_file" not in data:
        raise StoreFileError("the file has neither `model` nor `model_file`")
    path = base / str(data["model_file"])
    try:
        text = path.read_text()
    except OSError as exc:
        raise StoreFileError(f"{path}: {exc.strerror or exc}") from None
    if path.suffix == ".json":
        store.write_schema(import_fga_json(json.loads(text)))
    elif path.name == "fga.mod" or path.suffix == ".mod":
        store.write_schema(import_fga_modules(_read_module_files(path, text), text))
    else:
        store.write_model(text)


def _read_module_files(mod_path: Path, mod_text: str) -> dict[str, str]:
    """The module files an `fga.mod` lists, read relative to its directory."""
    files: dict[str, str] = {}
    for item in parse_fga_mod(mod_text).contents:
        file = mod_path.parent / item.path
        try:
            files[item.path] = file.read_text()
        except OSError as exc:
            raise StoreFileError(f"{file}: {exc.strerror or exc}") from None
    return files


def _as_list(entry: Mapping[str, Any], one: str, many: str) -> list[str]:
    if many in entry:
        return [str(v) for v in entry[many] or []]
    if one in entry:
        return [str(entry[one])]
    raise StoreFileError(f"an assertion needs `{one}` or `{many}`: {dict(entry)!r}")


def run_store_file(path: str | Path) -> StoreFileReport:
    """Run every test of a store file; raises StoreFileError when the file is malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise StoreFileError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise StoreFileError(f"{path}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("tests") or [], list):
        raise StoreFileError(f"{path}: not an OpenFGA store test file")
    base = path.parent
    report = StoreFileReport(path)
    shared = _collect_tuples(data, base, str(path))
    model_store = FgaStore()
    try:
        _load_model(model_store, data, base)
    except InvalidArgument as exc:
        report.failures.append(f"{path}: model: {exc}")
        return report
    for number, test in enumerate(data.get("tests") or []):
        name = str(test.get("name") or f"#{number}")
        where = f"{path}: test {name}"
        store = FgaStore()
        store.write_schema(model_store.schema)
        try:
            store.write_tuples([*shared, *_collect_tuples(test, base, where)])
        except FgaRequestError as exc:
            report.failures.append(f"{where}: {exc.message}")
            continue
        _run_checks(store, test, where, report)
        _run_list_objects(store, test, where, report)
        _run_list_users(store, test, where, report)
    return report


def _verify(report: StoreFileReport, where: str, request: str, expected: Any, compute: Any) -> None:
    report.assertions += 1
    try:
        got = compute()
    except FgaRequestError as exc:
        report.failures.append(f"{where}: {request}: expected {expected!r}, got error {exc}")
        return
    except ConditionsUnavailable as exc:
        report.failures.append(f"{where}: {request}: cannot evaluate: {exc}")
        return
    if got != expected:
        report.failures.append(f"{where}: {request}: expected {expected!r}, got {got!r}")


def _run_checks(store: FgaStore, test: Mapping[str, Any], where: str, report: StoreFileReport) -> None:
    for entry in test.get("check") or []:
        context = entry.get("context") or None
        for user in _as_list(entry, "user", "users"):
            for obj in _as_list(entry, "object", "objects"):
                for relation, expected in (entry.get("assertions") or {}).items():
                    _verify(
                        report,
                        where,
                        f"check {obj}#{relation}@{user}",
                        bool(expected),
                        lambda o=obj, r=relation, u=user, c=context: store.check(o, r, u, (), c),
                    )


def _run_list_objects(store: FgaStore, test: Mapping[str, Any], where: str, report: StoreFileReport) -> None:
    for entry in test.get("list_objects") or []:
        context = entry.get("context") or None
        for relation, expected in (entry.get("assertions") or {}).items():
            _verify(
                report,
                where,
                f"list_objects {entry['type']}#{relation}@{entry['user']}",
                sorted(str(v) for v in expected or []),
                lambda r=relation, e=entry, c=context: sorted(
                    store.list_objects(e["user"], e["type"], r, (), c)
                ),
            )


def _run_list_users(store: FgaStore, test: Mapping[str, Any], where: str, report: StoreFileReport) -> None:
    for entry in test.get("list_users") or []:
        context = entry.get("context") or None
        filters = [
            f"{f['type']}#{f['relation']}" if f.get("relation") else str(f["type"])
            for f in entry.get("user_filter") or []
        ]
        for relation, expected in (entry.get("assertions") or {}).items():
            users = (expected or {}).get("users") if isinstance(expected, Mapping) else expected
            _verify(
                report,
                where,
                f"list_users {entry['object']}#{relation} filter={filters}",
                sorted(str(v) for v in users or []),
                lambda r=relation, e=entry, f=filters, c=context: sorted(
                    store.list_users(e["object"], r, f, (), c)
                ),
            )
