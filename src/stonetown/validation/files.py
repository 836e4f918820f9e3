"""Validation files (the `zed validate` format), read with line numbers kept.

```yaml
schema: |-            # or schemaFile: path relative to this file
  definition user {}
  ...
relationships: |-     # one per line, // comments allowed
  document:readme#viewer@user:ana
assertions:
  assertTrue: ["document:readme#view@user:ana"]
  assertFalse: ['document:readme#view@user:bob with {"ip": "10.0.0.1"}']
  assertCaveated: [...]
validation:
  document:readme#view:
    - "[user:ana] is <document:readme#viewer>"
```
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import Relationship

MAX_FILE_BYTES = 64 * 1024 * 1024
ASSERTION_KINDS = ("assertTrue", "assertFalse", "assertCaveated")


class ValidationFileError(Exception):
    """The file cannot be read or does not have the expected shape (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Assertion:
    """One assertion: its kind, the relationship-shaped check, optional context, and line."""

    kind: str
    relationship: Relationship
    context: dict[str, Any] | None
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class ExpectedSubject:
    """One line of a `validation` block: a subject (as written) and the relations it comes through."""

    subject: str
    via: frozenset[str]
    line: int


@dataclass(slots=True)
class ValidationFile:
    """A parsed validation file."""

    path: Path
    schema: str
    schema_line: int
    relationships: list[tuple[Relationship, int]] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)
    validation: dict[str, tuple[int, list[ExpectedSubject]]] = field(default_factory=dict)


_JOINED_RE = re.compile(r"\s+(?=[a-z][a-z0-9_/]*:[^\s#]+#)")
_EXPECTED_RE = re.compile(r"^\s*\[(?P<subject>.+?)\]\s+is\s+(?P<via>(<[^>]*>/?)+)\s*$")


def read_validation_file(path: str | Path) -> ValidationFile:
    """Parse a validation file; raise ValidationFileError with file:line on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValidationFileError(f"{path}: file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFileError(f"{path}: not UTF-8 text") from None
    return parse_validation_text(text, path)


def parse_validation_text(text: str, path: Path) -> ValidationFile:
    """Parse validation-file text; `path` names it in messages and anchors `schemaFile`."""
    if len(text) > MAX_FILE_BYTES:
        raise ValidationFileError(f"{path}: text is {len(text)} characters; the limit is {MAX_FILE_BYTES}")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ValidationFileError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(root, yaml.MappingNode):
        raise ValidationFileError(f"{path}: expected a mapping with a `schema` key at the top")
    top = {key.value: value for key, value in root.value if isinstance(key, yaml.ScalarNode)}
    schema, schema_line = _schema(path, top)
    result = ValidationFile(path, schema, schema_line)
    rel_node = top.get("relationships")
    if rel_node is not None and not _is_null(rel_node):
        result.relationships = _relationships(path, rel_node)
    assertions = top.get("assertions")
    if assertions is not None and not _is_null(assertions):
        result.assertions = _assertions(path, assertions)
    validation = top.get("validation")
    if validation is not None and not _is_null(validation):
        result.validation = _validation(path, validation)
    return result


def load_validation_file(path: str | Path) -> tuple[str, list[Relationship]]:
    """The schema text and relationships of a validation file (for `serve --bootstrap`)."""
    parsed = read_validation_file(path)
    return parsed.schema, [rel for rel, _line in parsed.relationships]


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _schema(path: Path, top: dict[str, yaml.Node]) -> tuple[str, int]:
    node = top.get("schema")
    if node is not None and isinstance(node, yaml.ScalarNode) and not _is_null(node):
        # A block scalar's text starts on the line after its indicator.
        offset = 1 if node.style in ("|", ">") else 0
        return node.value, node.start_mark.line + 1 + offset
    file_node = top.get("schemaFile")
    if file_node is not None and isinstance(file_node, yaml.ScalarNode):
        schema_path = path.parent / file_node.value
        try:
            return schema_path.read_text(encoding="utf-8"), 1
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFileError(
                f"{path}:{file_node.start_mark.line + 1}: cannot read schemaFile {schema_path}: {exc}"
            ) from None
    raise ValidationFileError(f"{path}: no `schema` or `schemaFile` key")


def _relationships(path: Path, node: yaml.Node) -> list[tuple[Relationship, int]]:
    if not isinstance(node, yaml.ScalarNode):
        raise ValidationFileError(f"{path}:{node.start_mark.line + 1}: `relationships` must be a string")
    first = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)
    lines = node.value.splitlines()
    # A folded scalar (>) joins lines; its blank lines separate relationships. Line numbers
    # are then approximate, so report them as the scalar's first line plus the index.
    out: list[tuple[Relationship, int]] = []
    for offset, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        number = first + offset * (2 if node.style == ">" else 1)
        # Folding joins adjacent lines with a space: split where a new relationship starts.
        for part in _JOINED_RE.split(stripped):
            try:
                out.append((Relationship.parse(part), number))
            except InvalidArgument as exc:
                raise ValidationFileError(f"{path}:{number}: {exc}") from None
    return out


def _split_context(path: Path, text: str, line: int) -> tuple[str, dict[str, Any] | None]:
    head, sep, tail = text.partition(" with ")
    if not sep:
        return text.strip(), None
    try:
        context = json.loads(tail)
    except ValueError as exc:
        raise ValidationFileError(f"{path}:{line}: assertion context is not valid JSON: {exc}") from None
    if not isinstance(context, dict):
        raise ValidationFileError(f"{path}:{line}: assertion context must be a JSON object")
    return head.strip(), context


def _assertions(path: Path, node: yaml.Node) -> list[Assertion]:
    if not isinstance(node, yaml.MappingNode):
        raise ValidationFileError(f"{path}:{node.start_mark.line + 1}: `assertions` must be a mapping")
    out: list[Assertion] = []
    for key, value in node.value:
        kind = key.value
        if kind not in ASSERTION_KINDS:
            raise ValidationFileError(
                f"{path}:{key.start_mark.line + 1}: unknown assertion kind {kind!r} "
                f"(expected one of {', '.join(ASSERTION_KINDS)})"
            )
        if _is_null(value):
            continue
        if not isinstance(value, yaml.SequenceNode):
            raise ValidationFileError(f"{path}:{value.start_mark.line + 1}: `{kind}` must be a list")
        for item in value.value:
            line = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode):
                raise ValidationFileError(f"{path}:{line}: each assertion must be a string")
            text, context = _split_context(path, item.value, line)
            try:
                rel = Relationship.parse(text)
            except InvalidArgument as exc:
                raise ValidationFileError(f"{path}:{line}: {exc}") from None
            out.append(Assertion(kind, rel, context, line, item.value))
    return out


def _validation(path: Path, node: yaml.Node) -> dict[str, tuple[int, list[ExpectedSubject]]]:
    if not isinstance(node, yaml.MappingNode):
        raise ValidationFileError(f"{path}:{node.start_mark.line + 1}: `validation` must be a mapping")
    out: dict[str, tuple[int, list[ExpectedSubject]]] = {}
    for key, value in node.value:
        expected: list[ExpectedSubject] = []
        items = [] if _is_null(value) else value.value
        if not isinstance(items, list):
            raise ValidationFileError(f"{path}:{value.start_mark.line + 1}: expected a list of subjects")
        for item in items:
            line = item.start_mark.line + 1
            match = _EXPECTED_RE.match(str(item.value))
            if match is None:
                raise ValidationFileError(
                    f"{path}:{line}: expected `[subject] is <object#relation>`, got {item.value!r}"
                )
            via = frozenset(part.strip("<>") for part in re.findall(r"<[^>]*>", match["via"]))
            expected.append(ExpectedSubject(match["subject"].strip(), via, line))
        out[key.value] = (key.start_mark.line + 1, expected)
    return out
