"""OpenFGA modular models: an `fga.mod` manifest plus module files, combined into one model.

A modular model is a set of `.fga` files, each starting with `module <name>` instead of
`model` / `schema`. A file defines types and conditions and may `extend type t` to add
relations to a type defined in another file. The `fga.mod` manifest (YAML) names the schema
version (only `1.2`) and lists the files in ``contents``.

Files are combined as openfga/language's ``transformModuleFilesToModel`` does:

* every file is parsed on its own; its grammar errors are reported (with the file) and the
  file is left out; a file that does not start with `module` is "not a module";
* types and conditions are taken in file order; a later definition of the same name is a
  "duplicate type definition" / "duplicate condition" and is dropped;
* then extensions are applied, file by file: extending a type no file defines is an error,
  and so is adding a relation the type already has; a type without relations takes the
  extension's relations as they are;
* finally the combined model (schema `1.2`) is validated like a single model, each error
  keeping the file its node came from.

Everything here is pure: callers pass the file contents (see :func:`import_fga_modules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import yaml

from stonetown.schema import ir
from stonetown.schema.fga.errors import (
    SYNTAX_ERROR,
    FgaErrorDetail,
    FgaModFileError,
    FgaModuleError,
    FgaSyntaxError,
)
from stonetown.schema.fga.nodes import ConditionDef, Model, RelationDef, Span, TypeDef
from stonetown.schema.fga.parser import parse_model
from stonetown.schema.fga.to_ir import model_to_ir
from stonetown.schema.fga.validate import validate_model

MODULAR_SCHEMA_VERSION = "1.2"
MOD_FILE_ERROR = "fga-mod-error"
MODULE_ERROR = "module-error"

_STR_TAG = "tag:yaml.org,2002:str"
_START = Span(1, 1, 1, 1)  # where OpenFGA puts problems that have no place (line 0, column 0)
_N = TypeVar("_N")


@dataclass(frozen=True, slots=True)
class FgaModItem:
    """One entry of an `fga.mod` ``contents`` list: the normalised path and where it is written."""

    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class FgaMod:
    """A valid `fga.mod` manifest: schema version and the module files in listed order."""

    schema: str
    contents: tuple[FgaModItem, ...]
    schema_span: Span = dataclasses.field(default=Span(), compare=False)


@dataclass(frozen=True, slots=True)
class CombinedModel:
    """The result of combining module files: the model and the modules that contributed to it."""

    model: Model
    modules: tuple[str, ...]


def _node_span(node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def _raw(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    if isinstance(node, yaml.MappingNode):
        return "[object Object]"
    return ",".join(_raw(child) for child in node.value)


def _mod_error(message: str, span: Span = _START) -> FgaErrorDetail:
    return FgaErrorDetail(message, MOD_FILE_ERROR, span.line, span.column, span.end_line, span.end_column)


def _is_string(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG


def parse_fga_mod(text: str) -> FgaMod:
    """Parse and check an `fga.mod` manifest with openfga/language's rules and messages.

    Raises :class:`FgaModFileError` listing every problem (positions 1-based).
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        span = (
            Span(mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 1) if mark else Span(1, 1, 1, 1)
        )
        raise FgaModFileError([_mod_error(str(exc), span)]) from None
    fields: dict[str, yaml.Node] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode):
                fields[str(key.value)] = value
    errors: list[FgaErrorDetail] = []
    schema = fields.get("schema")
    schema_value = ""
    if schema is None:
        errors.append(_mod_error("missing schema field"))
    elif not _is_string(schema):
        errors.append(
            _mod_error(
                f"unexpected schema type, expected string got value {_raw(schema)}", _node_span(schema)
            )
        )
    elif schema.value != MODULAR_SCHEMA_VERSION:
        errors.append(
            _mod_error(
                "unsupported schema version, fga.mod only supported in version `1.2`", _node_span(schema)
            )
        )
    else:
        schema_value = str(schema.value)
    contents = fields.get("contents")
    items: list[FgaModItem] = []
    if contents is None:
        errors.append(_mod_error("missing contents field"))
    elif not isinstance(contents, yaml.SequenceNode):
        errors.append(
            _mod_error(
                f"unexpected contents type, expected list of strings got value {_raw(contents)}",
                _node_span(contents),
            )
        )
    else:
        for item in contents.value:
            span = _node_span(item)
            if not _is_string(item):
                errors.append(
                    _mod_error(f"unexpected contents item type, expected string got value {_raw(item)}", span)
                )
                continue
            raw = str(item.value)
            path = unquote_plus(raw).replace("\\", "/")
            if "../" in path or path.startswith("/"):
                errors.append(_mod_error(f"invalid contents item {raw}", span))
            elif not path.endswith(".fga"):
                errors.append(_mod_error(f"contents items should use fga file extension, got {raw}", span))
            else:
                items.append(FgaModItem(path, span))
    if errors:
        raise FgaModFileError(errors)
    assert schema is not None
    return FgaMod(schema_value, tuple(items), _node_span(schema))


def _in_file(node: _N, file: str) -> _N:
    """``node`` with every :class:`Span` inside it marked as coming from ``file``."""
    if isinstance(node, Span):
        return dataclasses.replace(node, file=file)  # type: ignore[return-value]
    if isinstance(node, tuple):
        return tuple(_in_file(item, file) for item in node)  # type: ignore[return-value]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if isinstance(value, Span | tuple) or dataclasses.is_dataclass(value):
                changes[f.name] = _in_file(value, file)
        return dataclasses.replace(node, **changes)  # type: ignore[type-var]
    return node


def _error(message: str, file: str, span: Span, symbol: str) -> FgaErrorDetail:
    return FgaErrorDetail(
        message, MODULE_ERROR, span.line, span.column, span.end_line, span.end_column, symbol, file
    )


@dataclass(slots=True)
class _Type:
    definition: TypeDef
    relations: list[RelationDef]


def _ordered_files(
    files: Mapping[str, str], fga_mod: str | None
) -> tuple[str, list[tuple[str, str]], list[FgaErrorDetail]]:
    if fga_mod is None:
        return MODULAR_SCHEMA_VERSION, list(files.items()), []
    manifest = parse_fga_mod(fga_mod)
    normalised = {name.replace("\\", "/").removeprefix("./"): text for name, text in files.items()}
    ordered: list[tuple[str, str]] = []
    errors: list[FgaErrorDetail] = []
    for item in manifest.contents:
        text = normalised.get(item.path.removeprefix("./"))
        if text is None:
            span = dataclasses.replace(item.span, file="fga.mod")
            errors.append(
                _error(f"module file {item.path} listed in fga.mod was not found", "fga.mod", span, item.path)
            )
        else:
            ordered.append((item.path, text))
    return manifest.schema, ordered, errors


def combine_fga_modules(files: Mapping[str, str], fga_mod: str | None = None) -> CombinedModel:
    """Combine module files into one validated model, as OpenFGA's tooling does.

    ``files`` maps a file name (as listed in `fga.mod`, relative to it) to its text. With
    ``fga_mod`` the files are taken in its ``contents`` order (files it does not list are
    ignored); without it, in the mapping's order. Raises :class:`FgaModFileError` for a bad
    manifest and :class:`FgaModuleError` with every problem found otherwise.
    """
    schema_version, ordered, errors = _ordered_files(files, fga_mod)
    types: dict[str, _Type] = {}
    conditions: dict[str, ConditionDef] = {}
    extensions: list[tuple[str, TypeDef]] = []
    modules: set[str] = set()
    for name, text in ordered:
        try:
            parsed = _in_file(parse_model(text), name)
        except FgaSyntaxError as exc:
            errors.extend(dataclasses.replace(e, file=name) for e in exc.errors)
            continue
        if parsed.module is None:
            errors.append(FgaErrorDetail("file is not a module", SYNTAX_ERROR, 1, 1, 1, 1, file=name))
            continue
        for type_def in parsed.types:
            if type_def.extend:
                extensions.append((name, type_def))
            elif type_def.name in types:
                errors.append(
                    _error(
                        f"duplicate type definition {type_def.name}", name, type_def.name_span, type_def.name
                    )
                )
            else:
                relations = [dataclasses.replace(r, module=parsed.module) for r in type_def.relations]
                types[type_def.name] = _Type(type_def, relations)
                modules.add(parsed.module)
        for condition in parsed.conditions:
            if condition.name in conditions:
                errors.append(
                    _error(f"duplicate condition {condition.name}", name, condition.name_span, condition.name)
                )
            else:
                conditions[condition.name] = condition
                modules.add(parsed.module)
    for name, extension in extensions:
        original = types.get(extension.name)
        if original is None:
            errors.append(
                _error(
                    f"extended type {extension.name} does not exist",
                    name,
                    extension.name_span,
                    extension.name,
                )
            )
            continue
        existing = {r.name for r in original.relations}
        for relation in extension.relations:
            if relation.name in existing:
                errors.append(
                    _error(
                        f"relation {relation.name} already exists on type {extension.name}",
                        name,
                        relation.name_span,
                        relation.name,
                    )
                )
                continue
            original.relations.append(dataclasses.replace(relation, module=extension.module))
            if extension.module:
                modules.add(extension.module)
    model = Model(
        schema_version,
        tuple(dataclasses.replace(t.definition, relations=tuple(t.relations)) for t in types.values()),
        tuple(conditions.values()),
    )
    errors.extend(validate_model(model))
    if errors:
        raise FgaModuleError(errors)
    return CombinedModel(model, tuple(sorted(modules)))


def import_fga_modules(files: Mapping[str, str], fga_mod: str | None = None) -> ir.Schema:
    """Combine, validate and compile a modular OpenFGA model (see :func:`combine_fga_modules`).

    Pure: ``files`` maps each module file name to its contents and ``fga_mod`` is the text
    of the `fga.mod` manifest, if any.
    """
    return model_to_ir(combine_fga_modules(files, fga_mod).model)
