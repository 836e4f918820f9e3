"""The compiler: syntax tree to IR, with the checks that need exact source positions.

It validates names against SpiceDB's patterns, finds duplicates (definitions and caveats
share one namespace, relations are unique per definition, parameters per caveat), checks
caveat parameter types and the `use expiration` flag, and caps expression depth. References
between declarations are checked afterwards on the IR by :mod:`stonetown.schema.checker`.
"""

from __future__ import annotations

from stonetown.core.relationship import RELATION_NAME_RE, TYPE_NAME_RE
from stonetown.schema import ast, ir
from stonetown.schema.diagnostics import Diagnostic

MAX_REWRITE_DEPTH = 100

SCALAR_CAVEAT_TYPES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "duration", "timestamp", "ipaddress", "any"}
)
GENERIC_CAVEAT_TYPES = {"list": 1, "map": 1}
KNOWN_FLAGS = frozenset({"expiration"})


def compile_ast(tree: ast.SchemaFile) -> tuple[ir.Schema, list[Diagnostic]]:
    """Compile a syntax tree into an IR schema and the diagnostics found on the way.

    The schema is only meaningful when the diagnostic list is empty.
    """
    return _Compiler().compile(tree)


def rewrite_depth(rewrite: ir.Rewrite) -> int:
    """How deeply a rewrite nests (a leaf is 1), computed without recursion."""
    deepest = 0
    stack: list[tuple[ir.Rewrite, int]] = [(rewrite, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, ir.Union | ir.Intersection):
            stack.extend((child, depth + 1) for child in node.children)
        elif isinstance(node, ir.Exclusion):
            stack.append((node.base, depth + 1))
            stack.append((node.subtract, depth + 1))
    return deepest


class _Compiler:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.uses_expiration = False

    def _report(self, pos: ir.Position, message: str) -> None:
        self.diagnostics.append(Diagnostic.at(pos, message))

    def _check_type_name(self, name: ast.Name, what: str) -> None:
        if not TYPE_NAME_RE.fullmatch(name.value):
            self._report(
                name.pos,
                f"invalid {what} `{name.value}`: value does not match regex pattern {TYPE_NAME_RE.pattern}",
            )

    def _check_relation_name(self, name: ast.Name, what: str) -> None:
        if not RELATION_NAME_RE.fullmatch(name.value):
            self._report(
                name.pos,
                f"invalid {what} `{name.value}`: "
                f"value does not match regex pattern {RELATION_NAME_RE.pattern}",
            )

    def compile(self, tree: ast.SchemaFile) -> tuple[ir.Schema, list[Diagnostic]]:
        for item in tree.items:
            if isinstance(item, ast.UseDecl):
                self._use(item)
        definitions: dict[str, ir.Definition] = {}
        caveats: dict[str, ir.Caveat] = {}
        for item in tree.items:
            if isinstance(item, ast.UseDecl):
                continue
            name = item.name.value
            if name in definitions or name in caveats:
                self._report(
                    item.name.pos, f"found name reused between multiple definitions and/or caveats: {name}"
                )
            if isinstance(item, ast.DefinitionDecl):
                definition = self._definition(item)
                if name not in definitions and name not in caveats:
                    definitions[name] = definition
            else:
                caveat = self._caveat(item)
                if name not in definitions and name not in caveats:
                    caveats[name] = caveat
        return ir.Schema(definitions, caveats, self.uses_expiration), self.diagnostics

    def _use(self, item: ast.UseDecl) -> None:
        flag = item.flag.value
        if flag not in KNOWN_FLAGS:
            self._report(item.flag.pos, f"unknown use flag `{flag}`; the known flags are: expiration")
        elif self.uses_expiration:
            self._report(ir.Position(item.line, item.column), f"found duplicate use flag: {flag}")
        else:
            self.uses_expiration = True

    # ---- definitions -----------------------------------------------------------------------

    def _definition(self, item: ast.DefinitionDecl) -> ir.Definition:
        self._check_type_name(item.name, "definition name")
        relations: dict[str, ir.Relation] = {}
        for member in item.members:
            relation = (
                self._relation(member) if isinstance(member, ast.RelationDecl) else self._permission(member)
            )
            if relation.name in relations:
                self._report(
                    member.name.pos,
                    f"found duplicate relation/permission name `{relation.name}` "
                    f"under definition `{item.name.value}`",
                )
                continue
            relations[relation.name] = relation
        return ir.Definition(item.name.value, relations, item.doc, ir.Position(item.line, item.column))

    def _relation(self, member: ast.RelationDecl) -> ir.Relation:
        self._check_relation_name(member.name, "relation name")
        allowed = tuple(self._type_ref(ref) for ref in member.types)
        first = member.types[0]
        rewrite = ir.This(allowed, ir.Position(first.line, first.column))
        return ir.Relation(
            member.name.value, rewrite, False, member.doc, ir.Position(member.line, member.column)
        )

    def _type_ref(self, ref: ast.TypeRef) -> ir.AllowedSubject:
        self._check_type_name(ref.type_name, "subject type")
        if ref.relation is not None:
            self._check_relation_name(ref.relation, "subject relation")
        if ref.caveat is not None:
            self._check_type_name(ref.caveat, "caveat name")
        if ref.expiration is not None and not self.uses_expiration:
            self._report(
                ref.expiration.pos, "expiration flag is not enabled; add `use expiration` to top of file"
            )
        return ir.AllowedSubject(
            type=ref.type_name.value,
            relation=ref.relation.value if ref.relation is not None else None,
            wildcard=ref.wildcard,
            caveat=ref.caveat.value if ref.caveat is not None else None,
            expiration=ref.expiration is not None,
            pos=ir.Position(ref.line, ref.column),
        )

    def _permission(self, member: ast.PermissionDecl) -> ir.Relation:
        self._check_relation_name(member.name, "permission name")
        rewrite = self._expression(member.expression)
        depth = rewrite_depth(rewrite)
        if depth > MAX_REWRITE_DEPTH:
            self._report(
                member.name.pos,
                f"permission `{member.name.value}` nests {depth} operations deep; "
                f"the limit is {MAX_REWRITE_DEPTH}",
            )
            rewrite = ir.Nil(ir.Position(member.expression.line, member.expression.column))
        return ir.Relation(
            member.name.value, rewrite, True, member.doc, ir.Position(member.line, member.column)
        )

    def _expression(self, expr: ast.Expr) -> ir.Rewrite:
        pos = ir.Position(expr.line, expr.column)
        if isinstance(expr, ast.NilExpr):
            return ir.Nil(pos)
        if isinstance(expr, ast.IdentifierExpr):
            self._check_relation_name(expr.name, "relation/permission name")
            return ir.ComputedUserset(expr.name.value, pos)
        if isinstance(expr, ast.ArrowExpr):
            self._check_relation_name(expr.left, "relation name")
            self._check_relation_name(expr.right, "relation/permission name")
            mode = "all" if expr.function == "all" else "any"
            return ir.TupleToUserset(expr.left.value, expr.right.value, mode, pos)
        children = [self._expression(operand) for operand in expr.operands]
        if expr.operator == "-":
            result = children[0]
            for child in children[1:]:
                result = ir.Exclusion(result, child, pos)
            return result
        # As SpiceDB does, a union of unions (or intersection of intersections) is flattened.
        kind = ir.Union if expr.operator == "+" else ir.Intersection
        flat: list[ir.Rewrite] = []
        for child in children:
            if isinstance(child, kind):
                flat.extend(child.children)
            else:
                flat.append(child)
        return kind(tuple(flat), pos)

    # ---- caveats ---------------------------------------------------------------------------

    def _caveat(self, item: ast.CaveatDecl) -> ir.Caveat:
        name = item.name.value
        self._check_type_name(item.name, "caveat name")
        if not item.parameters:
            self._report(item.name.pos, f"caveat `{name}` must have at least one parameter defined")
        if not item.expression:
            self._report(
                ir.Position(item.expression_line, item.expression_column),
                f"caveat `{name}` has an empty expression",
            )
        seen: set[str] = set()
        parameters: list[ir.CaveatParameter] = []
        for param in item.parameters:
            if param.name.value in seen:
                self._report(
                    param.name.pos, f"duplicate parameter `{param.name.value}` defined on caveat `{name}`"
                )
                continue
            seen.add(param.name.value)
            problem = self._caveat_type_problem(param.type)
            if problem is not None:
                bad, reason = problem
                self._report(
                    bad.name.pos,
                    f"invalid type for caveat parameter `{param.name.value}` on caveat `{name}`: {reason}",
                )
            parameters.append(ir.CaveatParameter(param.name.value, str(param.type), param.name.pos))
        return ir.Caveat(
            name,
            tuple(parameters),
            item.expression,
            item.doc,
            ir.Position(item.line, item.column),
            ir.Position(item.expression_line, item.expression_column),
        )

    def _caveat_type_problem(self, caveat_type: ast.CaveatType) -> tuple[ast.CaveatType, str] | None:
        name = caveat_type.name.value
        arity = GENERIC_CAVEAT_TYPES.get(name)
        if arity is None:
            if name not in SCALAR_CAVEAT_TYPES:
                known = ", ".join(sorted(SCALAR_CAVEAT_TYPES | GENERIC_CAVEAT_TYPES.keys()))
                return caveat_type, f"unknown type `{name}`; the known types are: {known}"
            if caveat_type.arguments:
                return caveat_type, f"type `{name}` does not take type arguments"
            return None
        if len(caveat_type.arguments) != arity:
            return (
                caveat_type,
                f"type `{name}` requires {arity} type argument, found {len(caveat_type.arguments)}",
            )
        for argument in caveat_type.arguments:
            problem = self._caveat_type_problem(argument)
            if problem is not None:
                return problem
        return None
