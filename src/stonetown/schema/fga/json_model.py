"""Read the JSON form of an OpenFGA model (as the OpenFGA API takes it) into a :class:`Model`.

Both the proto-JSON spellings (`computedUserset`, `tupleToUserset`) and the snake_case ones
(`computed_userset`, `tuple_to_userset`) are accepted. Nodes carry no source position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stonetown.schema.fga.errors import FgaErrorDetail, FgaSyntaxError, FgaValidationError
from stonetown.schema.fga.nodes import (
    Computed,
    ConditionDef,
    ConditionParam,
    Direct,
    Expr,
    FromTupleset,
    Model,
    Operation,
    RelationDef,
    Span,
    TypeDef,
    TypeRestriction,
    count_direct,
)

INVALID_JSON = "invalid-json"
ASSIGNABLE_RELATION_MUST_HAVE_TYPE = "assignable-relation-must-have-type"


def _fail(message: str) -> FgaSyntaxError:
    return FgaSyntaxError([FgaErrorDetail(message, INVALID_JSON)])


def _get(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in data and data[name] is not None:
            return data[name]
    return None


def _relation_name(data: Any, where: str) -> str:
    if not isinstance(data, Mapping) or not isinstance(data.get("relation"), str) or not data["relation"]:
        raise _fail(f"{where}: expected an object with a non-empty `relation`")
    return str(data["relation"])


def _userset(data: Any, restrictions: tuple[TypeRestriction, ...], where: str) -> Expr:
    if not isinstance(data, Mapping):
        raise _fail(f"{where}: a userset must be an object")
    if "this" in data:
        return Direct(restrictions)
    computed = _get(data, "computedUserset", "computed_userset")
    if computed is not None:
        return Computed(_relation_name(computed, where))
    ttu = _get(data, "tupleToUserset", "tuple_to_userset")
    if ttu is not None:
        if not isinstance(ttu, Mapping):
            raise _fail(f"{where}: tupleToUserset must be an object")
        tupleset = _relation_name(ttu.get("tupleset"), where)
        target = _relation_name(_get(ttu, "computedUserset", "computed_userset"), where)
        return FromTupleset(target, tupleset)
    for key, kind in (("union", "union"), ("intersection", "intersection")):
        if key in data:
            children = data[key].get("child") if isinstance(data[key], Mapping) else None
            if not isinstance(children, list) or not children:
                raise _fail(f"{where}: {key} needs a non-empty `child` list")
            converted = [_userset(child, restrictions, where) for child in children]
            if len(converted) == 1:
                return converted[0]
            return Operation(kind, tuple(converted))  # type: ignore[arg-type]
    if "difference" in data:
        difference = data["difference"]
        if not isinstance(difference, Mapping) or "base" not in difference or "subtract" not in difference:
            raise _fail(f"{where}: difference needs `base` and `subtract`")
        base = _userset(difference["base"], restrictions, where)
        subtract = _userset(difference["subtract"], restrictions, where)
        return Operation("difference", (base, subtract))
    raise _fail(f"{where}: unknown userset {sorted(data)}")


def _restriction(data: Any, where: str) -> TypeRestriction:
    if not isinstance(data, Mapping) or not isinstance(data.get("type"), str) or not data["type"]:
        raise _fail(f"{where}: a type restriction needs a `type`")
    relation = data.get("relation") or None
    wildcard = data.get("wildcard") is not None
    if relation is not None and wildcard:
        raise FgaValidationError(
            [
                FgaErrorDetail(
                    f"type restriction `{data['type']}#{relation}:*` cannot contain both wildcard "
                    "and relation",
                    "type-wildcard-relation",
                )
            ]
        )
    return TypeRestriction(str(data["type"]), relation, wildcard, data.get("condition") or None)


def _param_type(data: Any, where: str) -> str:
    if not isinstance(data, Mapping) or not isinstance(data.get("type_name"), str):
        raise _fail(f"{where}: a parameter needs a `type_name`")
    name = data["type_name"].removeprefix("TYPE_NAME_").lower()
    if name in ("list", "map"):
        generics = data.get("generic_types") or []
        if len(generics) != 1:
            raise _fail(f"{where}: {name} needs exactly one generic type")
        return f"{name}<{_param_type(generics[0], where)}>"
    if name not in ("any", "bool", "string", "int", "uint", "double", "duration", "timestamp", "ipaddress"):
        raise _fail(f"{where}: unknown parameter type {data['type_name']}")
    return name


def _origin(metadata: Any) -> tuple[str | None, str]:
    """(module, file) a type, relation or condition of a modular model came from."""
    if not isinstance(metadata, Mapping):
        return None, ""
    module = metadata.get("module") or None
    source = metadata.get("source_info") or metadata.get("sourceInfo") or {}
    file = source.get("file") if isinstance(source, Mapping) else None
    return (str(module) if module else None), (str(file) if file else "")


def model_from_json(data: Mapping[str, Any]) -> Model:
    """Build a :class:`Model` from a decoded JSON authorization model."""
    if not isinstance(data, Mapping):
        raise _fail("the model must be a JSON object")
    types: list[TypeDef] = []
    for index, type_data in enumerate(data.get("type_definitions") or []):
        if not isinstance(type_data, Mapping) or not isinstance(type_data.get("type"), str):
            raise _fail(f"type_definitions[{index}]: needs a `type`")
        type_name = str(type_data["type"])
        type_meta = type_data.get("metadata") or {}
        type_module, type_file = _origin(type_meta)
        metadata = type_meta.get("relations") or {}
        relations: list[RelationDef] = []
        for relation_name, userset in (type_data.get("relations") or {}).items():
            where = f"{type_name}#{relation_name}"
            meta = metadata.get(relation_name) or {}
            restrictions = tuple(
                _restriction(r, where) for r in meta.get("directly_related_user_types") or []
            )
            expr = _userset(userset, restrictions, where)
            direct_count = count_direct(expr)
            if direct_count > 1:
                raise FgaValidationError(
                    [
                        FgaErrorDetail(
                            f"`{where}`: each relationship must have at most 1 set of direct relations "
                            "defined.",
                            ASSIGNABLE_RELATION_MUST_HAVE_TYPE,
                        )
                    ]
                )
            if direct_count and not restrictions:
                raise FgaValidationError(
                    [
                        FgaErrorDetail(
                            f"assignable relation `{where}` must have types",
                            ASSIGNABLE_RELATION_MUST_HAVE_TYPE,
                        )
                    ]
                )
            module, file = _origin(meta)
            relations.append(
                RelationDef(str(relation_name), expr, Span(file=file or type_file), module or type_module)
            )
        types.append(TypeDef(type_name, tuple(relations), name_span=Span(file=type_file), module=type_module))
    conditions: list[ConditionDef] = []
    for key, condition in (data.get("conditions") or {}).items():
        if not isinstance(condition, Mapping) or not isinstance(condition.get("expression"), str):
            raise _fail(f"condition {key}: needs an `expression`")
        nested = condition.get("name")
        if nested and nested != key:
            raise FgaValidationError(
                [
                    FgaErrorDetail(
                        f"condition key is `{key}` but nested name property is {nested}",
                        "different-nested-condition-name",
                        symbol=str(nested),
                    )
                ]
            )
        params = tuple(
            ConditionParam(str(name), _param_type(param, f"condition {key}"))
            for name, param in (condition.get("parameters") or {}).items()
        )
        module, file = _origin(condition.get("metadata") or {})
        conditions.append(
            ConditionDef(
                str(key), params, condition["expression"].strip(), name_span=Span(file=file), module=module
            )
        )
    version = data.get("schema_version")
    return Model(str(version) if version else None, tuple(types), tuple(conditions))
