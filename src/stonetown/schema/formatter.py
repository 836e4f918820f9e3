"""The formatter: IR schema to canonical schema text.

Output order is source order (by IR positions; definitions then caveats when positions are
missing), one tab of indentation, doc comments kept, and only the parentheses that SpiceDB's
precedence (`+` over `&` over `-`, left-associative) requires. Parsing the output gives back
an IR equal to the input.
"""

from __future__ import annotations

from stonetown.schema import ir

_INDENT = "\t"
_PRECEDENCE = {ir.Exclusion: 1, ir.Intersection: 2, ir.Union: 3}


def format_schema(schema: ir.Schema) -> str:
    """Canonical schema text for ``schema``."""
    blocks: list[str] = []
    if schema.uses_expiration:
        blocks.append("use expiration")
    items: list[ir.Definition | ir.Caveat] = [*schema.definitions.values(), *schema.caveats.values()]
    if all(item.pos != ir.NOWHERE for item in items):
        items.sort(key=lambda item: (item.pos.line, item.pos.column))
    for item in items:
        if isinstance(item, ir.Definition):
            blocks.append(format_definition(item))
        else:
            blocks.append(format_caveat(item))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def format_doc(doc: str | None, indent: str = "") -> str:
    """A `/** ... */` comment for ``doc`` (with a trailing newline), or "" when there is none."""
    if doc is None:
        return ""
    lines = doc.replace("*/", "* /").split("\n")
    single = lines[0] if len(lines) == 1 else ""
    if single and single == single.strip() and not single.startswith("*"):
        return f"{indent}/** {lines[0]} */\n"
    body = "".join(f"{indent} *{' ' + line if line else ''}\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


def format_definition(definition: ir.Definition) -> str:
    """`definition name { ... }` with its doc comment."""
    head = format_doc(definition.doc) + f"definition {definition.name} {{"
    if not definition.relations:
        return head + "}"
    lines = [head]
    for relation in definition.relations.values():
        doc = format_doc(relation.doc, _INDENT)
        if relation.is_permission:
            lines.append(f"{doc}{_INDENT}permission {relation.name} = {format_rewrite(relation.rewrite)}")
        else:
            allowed = " | ".join(str(subject) for subject in relation.allowed)
            lines.append(f"{doc}{_INDENT}relation {relation.name}: {allowed}")
    lines.append("}")
    return "\n".join(lines)


def format_caveat(caveat: ir.Caveat) -> str:
    """`caveat name(params) { expression }` with its doc comment."""
    params = ", ".join(f"{param.name} {param.type}" for param in caveat.parameters)
    return f"{format_doc(caveat.doc)}caveat {caveat.name}({params}) {{\n{_INDENT}{caveat.expression}\n}}"


def format_rewrite(rewrite: ir.Rewrite) -> str:
    """A permission expression with minimal parentheses."""
    if isinstance(rewrite, ir.ComputedUserset):
        return rewrite.relation
    if isinstance(rewrite, ir.Nil):
        return "nil"
    if isinstance(rewrite, ir.TupleToUserset):
        if rewrite.mode == "all":
            return f"{rewrite.tupleset}.all({rewrite.computed})"
        return f"{rewrite.tupleset}->{rewrite.computed}"
    if isinstance(rewrite, ir.This):
        return " | ".join(str(subject) for subject in rewrite.allowed)
    if isinstance(rewrite, ir.Exclusion):
        base = _operand(rewrite.base, 1, same_kind_ok=True)
        subtract = _operand(rewrite.subtract, 1, same_kind_ok=False)
        return f"{base} - {subtract}"
    if not rewrite.children:
        return "nil"
    if len(rewrite.children) == 1:
        return format_rewrite(rewrite.children[0])
    symbol = " + " if isinstance(rewrite, ir.Union) else " & "
    precedence = _PRECEDENCE[type(rewrite)]
    return symbol.join(_operand(child, precedence, same_kind_ok=False) for child in rewrite.children)


def _operand(child: ir.Rewrite, parent_precedence: int, *, same_kind_ok: bool) -> str:
    text = format_rewrite(child)
    child_precedence = _PRECEDENCE.get(type(child))
    if child_precedence is None:
        return text
    if isinstance(child, ir.Union | ir.Intersection) and len(child.children) < 2:
        return text
    if child_precedence > parent_precedence or (child_precedence == parent_precedence and same_kind_ok):
        return text
    return f"({text})"
