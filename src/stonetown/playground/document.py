"""The playground's document: a validation file (``zed validate`` YAML) in four sections.

The page edits the sections as text, as SpiceDB's playground does: the schema, the test
relationships (one per line), the assertions (YAML: ``assertTrue`` / ``assertFalse`` /
``assertCaveated`` lists) and the expected relations (YAML: the ``validation`` block). A
document loaded from a file keeps the file's text, and saving it unchanged gives the same
bytes back; a changed document is written in the canonical layout below, which reads back
into the same sections. An OpenFGA store file (``.fga.yaml``) opens converted: its model as
SpiceDB schema, its tuples as relationships, its check tests as assertions.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from stonetown.validation.files import (
    MAX_FILE_BYTES,
    ValidationFile,
    ValidationFileError,
    parse_validation_text,
)

SECTIONS = ("schema", "relationships", "assertions", "validation")
MAX_DOCUMENT_CHARS = 4 * 1024 * 1024


class DocumentError(ValueError):
    """The text is not a document the playground can open; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Document:
    """The four sections as text, and the text the document was loaded from (if any)."""

    schema: str = ""
    relationships: str = ""
    assertions: str = ""
    validation: str = ""
    original: str | None = None
    name: str = "untitled.yaml"
    base: Path | None = None  # the directory a `schemaFile` of the original is read from

    def sections(self) -> dict[str, str]:
        """The four sections by name."""
        return {name: getattr(self, name) for name in SECTIONS}

    def with_sections(self, **sections: str) -> Document:
        """The same document with some sections replaced (the original text is kept)."""
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise DocumentError(f"unknown section(s): {', '.join(sorted(unknown))}")
        for name, text in sections.items():
            if not isinstance(text, str):
                raise DocumentError(f"section {name} must be text")
            if len(text) > MAX_DOCUMENT_CHARS:
                limit = MAX_DOCUMENT_CHARS
                raise DocumentError(f"section {name} is {len(text)} characters; the limit is {limit}")
        for name in ("assertions", "validation"):
            if name in sections:  # YAML sections: surrounding blank lines mean nothing
                sections[name] = sections[name].strip("\n")
        return replace(self, **sections)

    def to_yaml(self) -> str:
        """The validation file: the loaded text when nothing changed, else the canonical layout."""
        if self.original is not None:
            try:
                if from_yaml(self.original, self.name, self.base).sections() == self.sections():
                    return self.original
            except DocumentError:
                pass
        parts = [_block("schema", self.schema), _block("relationships", self.relationships)]
        for name in ("assertions", "validation"):
            text = getattr(self, name).strip("\n")
            if text.strip():
                parts.append(f"{name}:\n{textwrap.indent(text, '  ')}\n")
        return "".join(parts)

    def parsed(self) -> ValidationFile:
        """The document as the validation runner reads it (ValidationFileError on bad YAML)."""
        return parse_validation_text(self.to_yaml(), (self.base or Path.cwd()) / self.name)

    def section_lines(self) -> dict[str, int]:
        """The line (1-based) of the file (:meth:`to_yaml`) where each section's text starts,
        to place runner messages back in the section editors. Read from the layout (a key at
        the start of a line, its text from the next line), so it works on broken YAML too."""
        starts: dict[str, int] = {}
        for number, line in enumerate(self.to_yaml().splitlines(), start=1):
            key = line.split(":", 1)[0]
            if key in SECTIONS and line.startswith(key + ":") and key not in starts:
                inline = line[len(key) + 1 :].strip()
                starts[key] = number if inline and not inline.startswith(("|", ">")) else number + 1
        return starts


def _block(name: str, text: str) -> str:
    """`name: |` with the chomping and indentation indicators that give `text` back exactly."""
    if not text.strip():
        return f"{name}: ''\n" if name == "schema" else ""
    chomp = "+" if text.endswith("\n\n") else "" if text.endswith("\n") else "-"
    indent = "2" if text[:1] in (" ", "\n") else ""
    body = text[:-1] if text.endswith("\n") else text
    return f"{name}: |{indent}{chomp}\n{textwrap.indent(body, '  ', lambda line: True)}\n"


def from_yaml(text: str, name: str = "untitled.yaml", base: Path | None = None) -> Document:
    """Open validation-file text (or an OpenFGA store file's) as a document; a `schemaFile`
    is read relative to `base` (the file's directory)."""
    if len(text) > MAX_FILE_BYTES:
        raise DocumentError(f"{name}: {len(text)} characters; the limit is {MAX_FILE_BYTES}")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise DocumentError(f"{name}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        return Document(original=text, name=name, base=base)
    if not isinstance(root, yaml.MappingNode):
        raise DocumentError(f"{name}: expected a mapping with a `schema` key at the top")
    top = {key.value: value for key, value in root.value if isinstance(key, yaml.ScalarNode)}
    if "model" in top or "model_file" in top or "tuples" in top or "tests" in top and "schema" not in top:
        return _from_fga(text, name)
    sections: dict[str, str] = {}
    for key in ("schema", "relationships"):
        node = top.get(key)
        if node is None or _is_null(node):
            continue
        if not isinstance(node, yaml.ScalarNode):
            raise DocumentError(f"{name}:{node.start_mark.line + 1}: `{key}` must be text")
        sections[key] = node.value
    keys = {key.value: key for key, _value in root.value if isinstance(key, yaml.ScalarNode)}
    for key in ("assertions", "validation"):
        node = top.get(key)
        if node is not None and not _is_null(node):
            sections[key] = _source_of(text, keys[key])
    try:
        parsed = parse_validation_text(text, (base or Path(".")) / Path(name).name)
    except ValidationFileError as exc:
        raise DocumentError(str(exc)) from None
    if "schema" not in sections:
        sections["schema"] = parsed.schema  # from schemaFile
    return Document(original=text, name=name, base=base, **sections)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _source_of(text: str, key: yaml.Node) -> str:
    """The YAML text of a top-level key's value, dedented: what follows the key on its line,
    then every line up to the next top-level key (comments included)."""
    lines = text.splitlines()
    start = key.start_mark.line
    first = lines[start].split(":", 1)[1] if ":" in lines[start] else ""
    chunk = [" " * (len(lines[start]) - len(first.lstrip())) + first.lstrip()] if first.strip() else []
    for line in lines[start + 1 :]:
        if line[:1] not in ("", " ", "\t", "#"):
            break
        chunk.append(line)
    return textwrap.dedent("\n".join(chunk)).strip("\n")


def _from_fga(text: str, name: str) -> Document:
    """An OpenFGA store file as a document: the inline model converted to SpiceDB schema,
    its tuples as relationships (mixed relations stored under their ``__direct`` half), its
    ``check`` tests as assertions. Files it refers to (model_file, tuple_file) are not read."""
    from stonetown.core.errors import InvalidArgument
    from stonetown.schema import format_schema
    from stonetown.schema.fga import import_fga

    data = yaml.safe_load(text)
    if not isinstance(data.get("model"), str):
        raise DocumentError(f"{name}: the playground opens OpenFGA store files with an inline `model`")
    try:
        schema = import_fga(data["model"])
    except InvalidArgument as exc:
        raise DocumentError(f"{name}: model: {exc}") from None
    rels = [_fga_relationship(schema, item, name) for item in data.get("tuples") or []]
    kinds: dict[str, list[str]] = {"assertTrue": [], "assertFalse": []}
    for test in data.get("tests") or []:
        for check in test.get("check") or []:
            for kind, line in _fga_check_lines(check):
                kinds[kind].append(line)
    listed = {kind: lines for kind, lines in kinds.items() if lines}
    assertions = yaml.safe_dump(listed, sort_keys=False, width=1000).strip() if listed else ""
    converted = Path(name).with_suffix("").with_suffix(".yaml").name
    return Document(format_schema(schema), "\n".join(rels), assertions, name=converted)


def _fga_relationship(schema: object, item: object, name: str) -> str:
    from stonetown.core.errors import InvalidArgument
    from stonetown.fgatest.store import FgaRequestError, FgaTuple
    from stonetown.schema.fga.to_ir import fga_write_relation

    try:
        fga = FgaTuple.from_mapping(item)  # type: ignore[arg-type]
        relation = fga_write_relation(schema, fga.object.partition(":")[0], fga.relation)  # type: ignore[arg-type]
    except (FgaRequestError, InvalidArgument, AttributeError, TypeError) as exc:
        raise DocumentError(f"{name}: tuple {item!r}: {exc}") from None
    line = f"{fga.object}#{relation}@{fga.user}"
    if fga.condition and fga.condition_context:
        return line + f"[{fga.condition}:{json.dumps(dict(fga.condition_context))}]"
    return line + (f"[{fga.condition}]" if fga.condition else "")


def _fga_check_lines(check: dict) -> list[tuple[str, str]]:
    users = check.get("users") or [check.get("user")]
    objects = check.get("objects") or [check.get("object")]
    context = f" with {json.dumps(check['context'])}" if check.get("context") else ""
    return [
        ("assertTrue" if expected else "assertFalse", f"{obj}#{relation}@{user}{context}")
        for relation, expected in (check.get("assertions") or {}).items()
        for user in users
        for obj in objects
    ]
