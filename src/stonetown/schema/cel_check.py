"""Caveat expressions checked at schema time: parsed, bounded in depth and type-checked.

SpiceDB compiles every caveat with cel-go when the schema is written and refuses an
expression that does not parse, names an undeclared variable or function, applies an operator
to operand types it has no overload for, or does not result in a `bool` (a `dyn` result is
refused too). This module applies the same rules to the parse tree of cel-python (`celpy`),
the evaluator the engine runs, so a schema that is accepted can be evaluated. It also refuses
expressions nested deeper than :data:`MAX_CEL_DEPTH` parse-tree levels: the evaluator walks the
tree recursively and could never finish deeper ones.

Types are strings (`int`, `string`, `dyn`, ...) or tuples (`("list", T)`, `("map", K, V)`).
As in SpiceDB, a `uint` parameter is declared as a CEL `int` and `any` as `dyn`; `dyn`
operands match every overload.
"""

from __future__ import annotations

import sys
from typing import Any

import celpy
import lark
from celpy.celparser import CELParseError

from stonetown.schema import ir
from stonetown.schema.diagnostics import Diagnostic

MAX_CEL_DEPTH = 400
"""The deepest caveat parse tree accepted (about 38 nested parentheses or a chain of 390
`||`); the evaluator recurses a few Python frames per level."""

CelType = str | tuple[Any, ...]
DYN = "dyn"
_environment: celpy.Environment | None = None


def cel_environment() -> celpy.Environment:
    """The shared celpy environment (its parser is built once)."""
    global _environment
    if _environment is None:
        limit = sys.getrecursionlimit()
        _environment = celpy.Environment()
        # celpy's Environment sets the recursion limit to 2500; never lower what was there.
        sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))
    return _environment


class CelTypeError(Exception):
    """A caveat expression SpiceDB would refuse; ``line``/``column`` are within the expression."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line, self.column = line, column


_SCALARS = {
    "int": "int",
    "uint": "int",  # SpiceDB declares uint parameters as CEL ints
    "double": "double",
    "bool": "bool",
    "string": "string",
    "bytes": "bytes",
    "duration": "duration",
    "timestamp": "timestamp",
    "ipaddress": "ipaddress",
    "any": DYN,
}


def declared_type(text: str) -> CelType:
    """The CEL type of a caveat parameter written as `text` (`list<map<int>>`, ...)."""
    compact = text.replace(" ", "")
    if compact.startswith("list<") and compact.endswith(">"):
        return ("list", declared_type(compact[5:-1]))
    if compact.startswith("map<") and compact.endswith(">"):
        return ("map", "string", declared_type(compact[4:-1]))
    return _SCALARS.get(compact, DYN)


def show(ctype: CelType) -> str:
    """A type as cel-go prints it (`list(int)`, `map(string, dyn)`)."""
    if isinstance(ctype, tuple):
        return f"{ctype[0]}({', '.join(show(t) for t in ctype[1:])})"
    return "null" if ctype == "null" else ctype


def _matches(a: CelType, b: CelType) -> bool:
    """Whether values of types `a` and `b` can meet in one overload (`dyn` matches all)."""
    if a == DYN or b == DYN:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return a[0] == b[0] and all(_matches(x, y) for x, y in zip(a[1:], b[1:], strict=True))
    return a == b


def _join(types: list[CelType]) -> CelType:
    """The common type of list elements or map keys/values: the one type, or `dyn`."""
    known = [t for t in types if t != DYN]
    return known[0] if known and all(t == known[0] for t in known) and len(known) == len(types) else DYN


def parse_depth(tree: lark.Tree) -> int:
    """The depth of a parse tree, without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, lark.Tree))
    return deepest


def parse_caveat(expression: str) -> lark.Tree:
    """The bounded parse tree of a caveat expression; CelTypeError when it does not parse or
    nests too deeply."""
    try:
        tree = cel_environment().compile(expression)
    except CELParseError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise CelTypeError(f"syntax error near `{first[:60]}`", exc.line or 1, exc.column or 1) from None
    except RecursionError:
        raise CelTypeError(f"expression nests too deeply (more than {MAX_CEL_DEPTH} levels)") from None
    depth = parse_depth(tree)
    if depth > MAX_CEL_DEPTH:
        raise CelTypeError(
            f"expression nests {depth} levels deep, more than the maximum of {MAX_CEL_DEPTH} "
            "(too many nested parentheses, operators or calls)"
        )
    return tree


def check_expression(tree: lark.Tree, parameters: dict[str, CelType]) -> None:
    """Raise CelTypeError unless `tree` type-checks over `parameters` to `bool`."""
    result = _TypeChecker(parameters).type_of(tree)
    if result != "bool":
        raise CelTypeError(f"caveat expression must result in a boolean value: found `{show(result)}`")


def caveat_diagnostics(schema: ir.Schema) -> list[Diagnostic]:
    """One diagnostic per caveat whose expression SpiceDB would refuse, at its line:column."""
    found = []
    for caveat in schema.caveats.values():
        if not caveat.expression:
            continue  # the compiler already reports an empty expression
        try:
            tree = parse_caveat(caveat.expression)
            check_expression(tree, {p.name: declared_type(p.type) for p in caveat.parameters})
        except CelTypeError as exc:
            start = caveat.expression_pos
            line = start.line + exc.line - 1
            column = start.column + exc.column - 1 if exc.line == 1 else exc.column
            found.append(Diagnostic(line, column, f"invalid expression for caveat `{caveat.name}`: {exc}"))
    return found


_COMPARABLE = frozenset({"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"})
_ARITHMETIC: dict[str, dict[tuple[CelType, CelType], CelType]] = {
    "+": {
        **{(t, t): t for t in ("int", "uint", "double", "string", "bytes", "duration")},
        ("timestamp", "duration"): "timestamp",
        ("duration", "timestamp"): "timestamp",
    },
    "-": {
        **{(t, t): t for t in ("int", "uint", "double", "duration")},
        ("timestamp", "timestamp"): "duration",
        ("timestamp", "duration"): "timestamp",
    },
    "*": {(t, t): t for t in ("int", "uint", "double")},
    "/": {(t, t): t for t in ("int", "uint", "double")},
    "%": {(t, t): t for t in ("int", "uint")},
}
_OPERATOR_NODES = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}
# Conversion functions: the argument types each accepts, and its result.
_CONVERSIONS: dict[str, tuple[frozenset[str], CelType]] = {
    "int": (frozenset({"int", "uint", "double", "string", "timestamp"}), "int"),
    "uint": (frozenset({"int", "uint", "double", "string"}), "uint"),
    "double": (frozenset({"int", "uint", "double", "string"}), "double"),
    "string": (
        frozenset({"int", "uint", "double", "bool", "string", "bytes", "timestamp", "duration"}),
        "string",
    ),
    "bytes": (frozenset({"string", "bytes"}), "bytes"),
    "bool": (frozenset({"bool", "string"}), "bool"),
    "timestamp": (frozenset({"string", "int", "timestamp"}), "timestamp"),
    "duration": (frozenset({"string", "int", "duration"}), "duration"),
}
_STRING_METHODS = frozenset({"contains", "startsWith", "endsWith", "matches"})
_TIME_GETTERS = frozenset(
    {
        "getFullYear",
        "getMonth",
        "getDayOfYear",
        "getDayOfMonth",
        "getDate",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)
_DURATION_GETTERS = frozenset({"getHours", "getMinutes", "getSeconds", "getMilliseconds"})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TYPE_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)
_SIZED = ("string", "bytes", "list", "map")


def _where(node: lark.Tree | lark.Token) -> tuple[int, int]:
    if isinstance(node, lark.Token):
        return node.line or 1, node.column or 1
    meta = node.meta
    return (getattr(meta, "line", 1), getattr(meta, "column", 1)) if not meta.empty else (1, 1)


class _TypeChecker:
    """cel-go's checker rules over a celpy parse tree (depth already bounded)."""

    def __init__(self, parameters: dict[str, CelType]) -> None:
        self.scopes: list[dict[str, CelType]] = [dict(parameters)]

    def fail(self, node: lark.Tree | lark.Token, message: str) -> CelTypeError:
        line, column = _where(node)
        return CelTypeError(message, line, column)

    def no_overload(self, node: lark.Tree | lark.Token, name: str, *types: CelType) -> CelTypeError:
        shown = ", ".join(show(t) for t in types)
        return self.fail(node, f"found no matching overload for '{name}' applied to '({shown})'")

    def type_of(self, node: lark.Tree) -> CelType:
        handler = getattr(self, "t_" + str(node.data), None)
        if handler is not None:
            return handler(node)
        children = [c for c in node.children if isinstance(c, lark.Tree)]
        if len(children) == 1:  # pass-through levels: expr, member, primary, ...
            return self.type_of(children[0])
        raise self.fail(node, f"unsupported construct `{node.data}`")

    def t_expr(self, node: lark.Tree) -> CelType:
        if len(node.children) == 1:
            return self.type_of(node.children[0])
        condition, then, otherwise = (self.type_of(c) for c in node.children)
        if condition not in ("bool", DYN) or not _matches(then, otherwise):
            raise self.no_overload(node, "_?_:_", condition, then, otherwise)
        return then if then != DYN else otherwise

    def _logical(self, node: lark.Tree, name: str) -> CelType:
        if len(node.children) == 1:
            return self.type_of(node.children[0])
        left, right = (self.type_of(c) for c in node.children)
        if left not in ("bool", DYN) or right not in ("bool", DYN):
            raise self.no_overload(node, name, left, right)
        return "bool"

    def t_conditionalor(self, node: lark.Tree) -> CelType:
        return self._logical(node, "_||_")

    def t_conditionaland(self, node: lark.Tree) -> CelType:
        return self._logical(node, "_&&_")

    def _binary(self, node: lark.Tree) -> CelType:
        if len(node.children) == 1:
            return self.type_of(node.children[0])
        operator_node, right_node = node.children
        operator = _OPERATOR_NODES[str(operator_node.data)]
        left = self.type_of(operator_node.children[0])
        right = self.type_of(right_node)
        name = "@in" if operator == "in" else f"_{operator}_"
        if operator in ("==", "!="):
            if not _matches(left, right):
                raise self.no_overload(operator_node, name, left, right)
            return "bool"
        if operator in ("<", "<=", ">", ">="):
            if left == DYN or right == DYN or (left == right and left in _COMPARABLE):
                return "bool"
            raise self.no_overload(operator_node, name, left, right)
        if operator == "in":
            if right == DYN or (isinstance(right, tuple) and _matches(left, right[1])):
                return "bool"
            raise self.no_overload(operator_node, name, left, right)
        if left == DYN or right == DYN:
            return DYN
        if operator == "+" and isinstance(left, tuple) and left[0] == "list" and _matches(left, right):
            return left if left == right else ("list", DYN)
        result = _ARITHMETIC[operator].get((left, right))
        if result is None:
            raise self.no_overload(operator_node, name, left, right)
        return result

    t_relation = t_addition = t_multiplication = _binary

    def t_unary(self, node: lark.Tree) -> CelType:
        if len(node.children) == 1:
            return self.type_of(node.children[0])
        operator, operand_node = node.children
        operand = self.type_of(operand_node)
        if operator.data == "unary_not":
            if operand not in ("bool", DYN):
                raise self.no_overload(node, "!_", operand)
            return "bool"
        if operand not in ("int", "double", DYN):
            raise self.no_overload(node, "-_", operand)
        return operand

    def t_literal(self, node: lark.Tree) -> CelType:
        token = node.children[0]
        return {
            "INT_LIT": "int",
            "UINT_LIT": "uint",
            "FLOAT_LIT": "double",
            "STRING_LIT": "string",
            "MLSTRING_LIT": "string",
            "BYTES_LIT": "bytes",
            "BOOL_LIT": "bool",
            "NULL_LIT": "null",
        }.get(token.type, DYN)

    def _name(self, node: lark.Tree, token: lark.Token) -> CelType:
        name = str(token)
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in _TYPE_NAMES:
            return "type"
        raise self.fail(token, f"undeclared reference to '{name}'")

    def t_ident(self, node: lark.Tree) -> CelType:
        return self._name(node, node.children[0])

    t_dot_ident = t_ident

    def t_paren_expr(self, node: lark.Tree) -> CelType:
        return self.type_of(node.children[0])

    def _arguments(self, node: lark.Tree | None) -> list[lark.Tree]:
        return [] if node is None else [c for c in node.children if isinstance(c, lark.Tree)]

    def t_list_lit(self, node: lark.Tree) -> CelType:
        items = self._arguments(node.children[0] if node.children else None)
        return ("list", _join([self.type_of(item) for item in items]) if items else DYN)

    def t_map_lit(self, node: lark.Tree) -> CelType:
        items = self._arguments(node.children[0] if node.children else None)
        keys = [self.type_of(k) for k in items[0::2]]
        values = [self.type_of(v) for v in items[1::2]]
        return ("map", _join(keys) if keys else DYN, _join(values) if values else DYN)

    def _select(self, node: lark.Tree, target: CelType) -> CelType:
        if target == DYN:
            return DYN
        if isinstance(target, tuple) and target[0] == "map":
            return target[2]
        raise self.fail(node, f"type '{show(target)}' does not support field selection")

    def t_member_dot(self, node: lark.Tree) -> CelType:
        return self._select(node.children[1], self.type_of(node.children[0]))

    def t_member_index(self, node: lark.Tree) -> CelType:
        target, index = self.type_of(node.children[0]), self.type_of(node.children[1])
        if target == DYN:
            return DYN
        if isinstance(target, tuple) and target[0] == "list" and index in ("int", "uint", DYN):
            return target[1]
        if isinstance(target, tuple) and target[0] == "map" and _matches(index, target[1]):
            return target[2]
        raise self.no_overload(node, "_[_]", target, index)

    def t_member_object(self, node: lark.Tree) -> CelType:
        raise self.fail(node, "message construction is not supported in caveats")

    def t_ident_arg(self, node: lark.Tree) -> CelType:
        token = node.children[0]
        name = str(token)
        arguments = self._arguments(node.children[1] if len(node.children) > 1 else None)
        if name == "has":
            if len(arguments) != 1 or not self._is_select(arguments[0]):
                raise self.fail(token, "invalid argument to has() macro")
            select = self._find_select(arguments[0])
            self._select(select.children[1], self.type_of(select.children[0]))
            return "bool"
        types = [self.type_of(argument) for argument in arguments]
        if name == "dyn" and len(types) == 1:
            return DYN
        if name == "type" and len(types) == 1:
            return "type"
        if name == "size" and len(types) == 1:
            if types[0] == DYN or self._kind(types[0]) in _SIZED:
                return "int"
            raise self.no_overload(token, "size", *types)
        if name == "matches" and len(types) == 2:
            if all(t in ("string", DYN) for t in types):
                return "bool"
            raise self.no_overload(token, "matches", *types)
        conversion = _CONVERSIONS.get(name)
        if conversion is not None and len(types) == 1:
            accepted, result = conversion
            if types[0] == DYN or types[0] in accepted:
                return result
            raise self.no_overload(token, name, *types)
        raise self.fail(token, f"undeclared reference to '{name}'")

    @staticmethod
    def _kind(ctype: CelType) -> str:
        return ctype[0] if isinstance(ctype, tuple) else ctype

    def _find_select(self, node: lark.Tree) -> lark.Tree:
        while node.data != "member_dot":
            node = next(c for c in node.children if isinstance(c, lark.Tree))
        return node

    def _is_select(self, node: lark.Tree) -> bool:
        while node.data != "member_dot":
            children = [c for c in node.children if isinstance(c, lark.Tree)]
            if len(children) != 1 or node.data in ("paren_expr", "member_index", "member_dot_arg"):
                return False
            node = children[0]
        return True

    def t_member_dot_arg(self, node: lark.Tree) -> CelType:
        token = node.children[1]
        name = str(token)
        arguments = self._arguments(node.children[2] if len(node.children) > 2 else None)
        if name in _MACROS and len(arguments) in (2, 3):
            return self._macro(node, name, arguments)
        receiver = self.type_of(node.children[0])
        types = [self.type_of(argument) for argument in arguments]
        kind = self._kind(receiver)
        if name == "size" and not types:
            if receiver == DYN or kind in _SIZED:
                return "int"
        elif name in _STRING_METHODS and len(types) == 1:
            if receiver in ("string", DYN) and types[0] in ("string", DYN):
                return "bool"
        elif name == "in_cidr" and len(types) == 1:
            if receiver in ("ipaddress", DYN) and types[0] in ("string", DYN):
                return "bool"
        elif name in _TIME_GETTERS and len(types) <= 1:
            if receiver in ("timestamp", DYN) and all(t in ("string", DYN) for t in types):
                return "int"
            if receiver == "duration" and not types and name in _DURATION_GETTERS:
                return "int"
        else:
            raise self.fail(token, f"undeclared reference to '{name}'")
        shown = f"{show(receiver)}.({', '.join(show(t) for t in types)})"
        raise self.fail(token, f"found no matching overload for '{name}' applied to '{shown}'")

    def _macro(self, node: lark.Tree, name: str, arguments: list[lark.Tree]) -> CelType:
        token = node.children[1]
        if name != "map" and len(arguments) == 3:
            raise self.fail(token, f"undeclared reference to '{name}'")
        variable = arguments[0]
        idents = [t for t in variable.iter_subtrees() if t.data == "ident"]
        if parse_depth(variable) > 10 or len(idents) != 1:
            raise self.fail(variable, "argument must be a simple name")
        range_type = self.type_of(node.children[0])
        if range_type == DYN:
            element: CelType = DYN
        elif isinstance(range_type, tuple):
            element = range_type[1]
        else:
            raise self.fail(
                node,
                f"expression of type '{show(range_type)}' cannot be range of a comprehension "
                "(must be list, map, or dynamic)",
            )
        self.scopes.append({str(idents[0].children[0]): element})
        try:
            body = [self.type_of(argument) for argument in arguments[1:]]
        finally:
            self.scopes.pop()
        predicates = body[:-1] if name == "map" else body
        for argument, found in zip(arguments[1:], predicates, strict=False):
            if found not in ("bool", DYN):
                raise self.fail(argument, f"expected type 'bool' but found '{show(found)}'")
        if name == "map":
            return ("list", body[-1])
        if name == "filter":
            return ("list", element)
        return "bool"
