"""Write an IR schema as an OpenFGA DSL model (schema 1.1).

Split definitions made by the importer (`viewer__direct` + `permission viewer = ...`) are
folded back into `define viewer: [user] or ...`, so ``import_fga(export_fga(s)) == s`` for
every schema :func:`~stonetown.schema.fga.import_fga` produced. Constructs OpenFGA cannot
express raise :class:`InvalidArgument` naming the construct: `nil`, `.all()` arrows,
`with expiration`, permissions that are a bare reference to a stored relation's direct part,
caveat parameter types OpenFGA lacks (`bytes`, nested generics), unused caveats (OpenFGA
rejects unused conditions), and names the DSL cannot spell. The text produced is parsed and
validated again before it is returned, so anything OpenFGA would refuse is reported here.
"""

from __future__ import annotations

import re

from stonetown.core.errors import InvalidArgument
from stonetown.schema import ir
from stonetown.schema.fga.errors import FgaError
from stonetown.schema.fga.parser import KEYWORD_IDENTIFIERS, PARAM_CONTAINERS, PARAM_TYPES, RESERVED_WORDS
from stonetown.schema.fga.to_ir import HIDDEN_SUFFIX, split_part

_NAME_RE = re.compile(r"^[A-Za-z_](?:[A-Za-z0-9_\-]|[/.](?=[A-Za-z0-9_]))*$")
_PLAIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _name(name: str, what: str, plain: bool = False) -> str:
    ok = bool((_PLAIN_RE if plain else _NAME_RE).match(name)) and name not in RESERVED_WORDS
    if plain and name in KEYWORD_IDENTIFIERS:
        ok = False
    if not ok:
        raise InvalidArgument(f"{what} `{name}` cannot be written in the OpenFGA DSL")
    return name


def _subject(subject: ir.AllowedSubject, where: str) -> str:
    if subject.expiration:
        raise InvalidArgument(f"{where}: `with expiration` has no OpenFGA equivalent")
    text = _name(subject.type, "type")
    if subject.wildcard:
        text += ":*"
    elif subject.relation is not None:
        text += "#" + _name(subject.relation, "relation")
    if subject.caveat:
        text += " with " + _name(subject.caveat, "condition", plain=True)
    return text


def _direct(relation: ir.Relation, where: str) -> str:
    if not relation.allowed:
        raise InvalidArgument(f"{where}: a relation without subject types has no OpenFGA equivalent")
    return "[" + ", ".join(_subject(s, where) for s in relation.allowed) + "]"


class _Writer:
    def __init__(self, definition: ir.Definition, hidden: ir.Relation | None, where: str) -> None:
        self.definition = definition
        self.hidden = hidden
        self.where = where
        self.direct_written = False

    def operand(self, rewrite: ir.Rewrite, first: bool) -> str:
        text = self.expr(rewrite, first)
        if isinstance(rewrite, ir.Union | ir.Intersection | ir.Exclusion):
            return f"({text})"
        return text

    def expr(self, rewrite: ir.Rewrite, first: bool = True) -> str:
        if isinstance(rewrite, ir.ComputedUserset):
            if self.hidden is not None and rewrite.relation == self.hidden.name:
                if not first or self.direct_written:
                    raise InvalidArgument(
                        f"{self.where}: OpenFGA allows the direct assignment `{self.hidden.name}` only as "
                        f"the first operand of the definition"
                    )
                self.direct_written = True
                return _direct(self.hidden, self.where)
            return _name(rewrite.relation, "relation")
        if isinstance(rewrite, ir.TupleToUserset):
            if rewrite.mode != "any":
                raise InvalidArgument(f"{self.where}: `.all()` arrows have no OpenFGA equivalent")
            computed = _name(rewrite.computed, "relation")
            return f"{computed} from {_name(rewrite.tupleset, 'relation')}"
        if isinstance(rewrite, ir.Union | ir.Intersection):
            word = " or " if isinstance(rewrite, ir.Union) else " and "
            return word.join(
                self.operand(child, first and index == 0) for index, child in enumerate(rewrite.children)
            )
        if isinstance(rewrite, ir.Exclusion):
            base = self.operand(rewrite.base, first)
            return f"{base} but not {self.operand(rewrite.subtract, False)}"
        if isinstance(rewrite, ir.Nil):
            raise InvalidArgument(f"{self.where}: `nil` has no OpenFGA equivalent")
        raise InvalidArgument(f"{self.where}: a direct assignment can only be a relation's whole definition")


def _hoist_direct(rewrite: ir.Rewrite, hidden: str) -> ir.Rewrite:
    """Move a reference to the hidden relation to the front of a top-level union (same meaning)."""
    if isinstance(rewrite, ir.Union):
        refs = [c for c in rewrite.children if isinstance(c, ir.ComputedUserset) and c.relation == hidden]
        if refs and rewrite.children[0] is not refs[0]:
            rest = tuple(c for c in rewrite.children if c is not refs[0])
            return ir.Union((refs[0], *rest), rewrite.pos)
    return rewrite


def _used_elsewhere(schema: ir.Schema, type_name: str, hidden: str, owner: str) -> bool:
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            for subject in relation.allowed:
                if subject.type == type_name and subject.relation == hidden:
                    return True
            if (
                definition.name == type_name
                and relation.name != owner
                and _mentions(relation.rewrite, hidden)
            ):
                return True
            if _arrow_mentions(relation.rewrite, hidden):
                return True
    return False


def _mentions(rewrite: ir.Rewrite, name: str) -> bool:
    if isinstance(rewrite, ir.ComputedUserset):
        return rewrite.relation == name
    if isinstance(rewrite, ir.TupleToUserset):
        return name in (rewrite.tupleset, rewrite.computed)
    if isinstance(rewrite, ir.Union | ir.Intersection):
        return any(_mentions(child, name) for child in rewrite.children)
    if isinstance(rewrite, ir.Exclusion):
        return _mentions(rewrite.base, name) or _mentions(rewrite.subtract, name)
    return False


def _arrow_mentions(rewrite: ir.Rewrite, name: str) -> bool:
    if isinstance(rewrite, ir.TupleToUserset):
        return rewrite.computed == name
    if isinstance(rewrite, ir.Union | ir.Intersection):
        return any(_arrow_mentions(child, name) for child in rewrite.children)
    if isinstance(rewrite, ir.Exclusion):
        return _arrow_mentions(rewrite.base, name) or _arrow_mentions(rewrite.subtract, name)
    return False


def _param_type(type_name: str, where: str) -> str:
    match = re.fullmatch(r"(\w+)<(\w+)>", type_name)
    if match and match.group(1) in PARAM_CONTAINERS and match.group(2) in PARAM_TYPES:
        return type_name
    if type_name in PARAM_TYPES:
        return type_name
    raise InvalidArgument(f"{where}: parameter type `{type_name}` has no OpenFGA DSL equivalent")


def _condition(caveat: ir.Caveat) -> str:
    where = f"caveat `{caveat.name}`"
    name = _name(caveat.name, "caveat", plain=True)
    if not caveat.parameters:
        raise InvalidArgument(f"{where}: OpenFGA conditions need at least one parameter")
    params = ", ".join(
        f"{_name(p.name, 'parameter', plain=True)}: {_param_type(p.type, where)}" for p in caveat.parameters
    )
    expression = caveat.expression.strip()
    if " #" in expression or any(line.lstrip().startswith("#") for line in expression.splitlines()):
        raise InvalidArgument(f"{where}: the OpenFGA DSL would read ` #` in the expression as a comment")
    body = "\n".join("  " + line.strip() for line in expression.splitlines())
    return f"condition {name}({params}) {{\n{body}\n}}"


def _definition(schema: ir.Schema, definition: ir.Definition) -> str:
    lines = [f"type {_name(definition.name, 'type')}"]
    folded: set[str] = set()
    for relation in definition.relations.values():
        hidden = split_part(schema, definition.name, relation.name)
        if hidden is not None and relation.rewrite != ir.ComputedUserset(hidden.name):
            if _used_elsewhere(schema, definition.name, hidden.name, relation.name):
                raise InvalidArgument(
                    f"relation `{definition.name}#{hidden.name}` is used on its own, but OpenFGA can only "
                    f"express it as the direct part of `{relation.name}`"
                )
            folded.add(hidden.name)
    body = []
    for relation in definition.relations.values():
        if relation.name in folded:
            continue
        where = f"`{definition.name}#{relation.name}`"
        name = _name(relation.name, "relation")
        if (
            relation.name.endswith(HIDDEN_SUFFIX)
            and relation.name[: -len(HIDDEN_SUFFIX)] in definition.relations
        ):
            raise InvalidArgument(
                f"relation {where} would clash with the direct part of "
                f"`{relation.name[: -len(HIDDEN_SUFFIX)]}` when imported back"
            )
        if not relation.is_permission:
            body.append(f"    define {name}: {_direct(relation, where)}")
            continue
        hidden = split_part(schema, definition.name, relation.name)
        rewrite = relation.rewrite
        if hidden is not None and hidden.name in folded:
            rewrite = _hoist_direct(rewrite, hidden.name)
        else:
            hidden = None
        writer = _Writer(definition, hidden, where)
        body.append(f"    define {name}: {writer.expr(rewrite)}")
    if body:
        lines.append("  relations")
        lines.extend(body)
    return "\n".join(lines)


def export_fga(schema: ir.Schema) -> str:
    """The OpenFGA DSL text of ``schema``; raises :class:`InvalidArgument` for what cannot map."""
    used = {
        subject.caveat
        for definition in schema.definitions.values()
        for relation in definition.relations.values()
        for subject in relation.allowed
        if subject.caveat
    }
    for name in schema.caveats:
        if name not in used:
            raise InvalidArgument(
                f"caveat `{name}` is not used by any relation; OpenFGA rejects unused conditions"
            )
    parts = ["model\n  schema 1.1"]
    parts.extend(_definition(schema, d) for d in schema.definitions.values())
    parts.extend(_condition(c) for c in schema.caveats.values())
    text = "\n\n".join(parts) + "\n"

    from stonetown.schema.fga import import_fga

    try:
        import_fga(text)
    except FgaError as error:
        raise InvalidArgument(f"the schema is not a valid OpenFGA model: {error}") from error
    return text
