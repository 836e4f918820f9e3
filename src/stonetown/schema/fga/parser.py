"""Recursive-descent parser of the OpenFGA DSL (schema 1.1 / 1.2), following the grammar of
openfga/language (`OpenFGAParser.g4`):

* one operator kind per level: `a or b or c`, `a and b`, `a but not b`; mixing needs
  parentheses, and `but not` takes exactly one subtrahend;
* a direct assignment `[...]` only as the first operand of a definition (possibly inside
  the leading parentheses), never after an operator;
* conditions come after every type.

Besides grammar errors it reports what OpenFGA's parser reports while building the model:
a relation defined twice in a type, a condition or parameter defined twice, `extend` outside
a module and a type extended twice in one module file. The first grammar error stops parsing.
"""

from __future__ import annotations

from stonetown.schema.fga import lexer
from stonetown.schema.fga.errors import SYNTAX_ERROR, FgaErrorDetail, FgaSyntaxError
from stonetown.schema.fga.lexer import BUT_NOT, CEL, EOF, NL, VERSION, WORD, WS, Token, end_of
from stonetown.schema.fga.nodes import (
    Computed,
    ConditionDef,
    ConditionParam,
    Direct,
    Expr,
    FromTupleset,
    Model,
    Operation,
    OperatorKind,
    RelationDef,
    Span,
    TypeDef,
    TypeRestriction,
)

# Words the lexer turns into their own tokens; they can never name a type or relation.
RESERVED_WORDS = frozenset(
    {"and", "or", "from", "define", "relations", "with", "condition", "in", "true", "false", "null"}
)
# Keywords the grammar still accepts as type and relation names.
KEYWORD_IDENTIFIERS = frozenset({"module", "model", "schema", "extend", "type", "relation"})
PARAM_TYPES = frozenset({"bool", "string", "int", "uint", "double", "duration", "timestamp", "ipaddress"})
PARAM_CONTAINERS = frozenset({"map", "list"})

_OPERATORS: dict[str, OperatorKind] = {"or": "union", "and": "intersection", "but not": "difference"}


class _Abort(Exception):
    """Stops parsing at the first grammar error."""


def _span(first: Token, last: Token | None = None) -> Span:
    last = last or first
    return Span(first.line, first.column, last.end_line, last.end_column)


def _span_between(start: Span, end: Span) -> Span:
    return Span(start.line, start.column, end.end_line, end.end_column)


def _is_plain_identifier(text: str) -> bool:
    return "/" not in text and "." not in text


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = lexer.tokenize(text)
        self.pos = 0
        self.errors: list[FgaErrorDetail] = []
        self.module: str | None = None

    # ---- token helpers ---------------------------------------------------------------

    def peek(self, offset: int = 0) -> Token:
        index = min(self.pos + offset, len(self.tokens) - 1)
        return self.tokens[index]

    def advance(self) -> Token:
        token = self.peek()
        if token.kind != EOF:
            self.pos += 1
        return token

    def is_word(self, token: Token, word: str) -> bool:
        return token.kind == WORD and token.text == word

    def skip(self, kind: str) -> None:
        if self.peek().kind == kind:
            self.advance()

    def fail(self, token: Token, expected: str) -> _Abort:
        self.report(f"mismatched input {token.describe()} expecting {expected}", token, SYNTAX_ERROR)
        return _Abort()

    def report(self, message: str, token: Token | Span, category: str, symbol: str | None = None) -> None:
        span = token if isinstance(token, Span) else _span(token)
        text = symbol if symbol is not None else (token.text if isinstance(token, Token) else "")
        self.errors.append(
            FgaErrorDetail(message, category, span.line, span.column, span.end_line, span.end_column, text)
        )

    def expect(self, kind: str, expected: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.fail(token, expected)
        return self.advance()

    def expect_word(self, word: str) -> Token:
        token = self.peek()
        if not self.is_word(token, word):
            raise self.fail(token, repr(word))
        return self.advance()

    def identifier(self, what: str, plain: bool = False) -> Token:
        """A type or relation name (some keywords allowed), or a plain IDENTIFIER."""
        token = self.peek()
        ok = token.kind == WORD and token.text not in RESERVED_WORDS
        if ok and plain:
            ok = _is_plain_identifier(token.text) and token.text not in KEYWORD_IDENTIFIERS
        if not ok:
            raise self.fail(token, what)
        return self.advance()

    # ---- model -----------------------------------------------------------------------

    def parse(self) -> Model:
        self.skip(WS)
        self.skip(NL)
        version: str | None = None
        version_span = Span()
        token = self.peek()
        if self.is_word(token, "model"):
            self.advance()
            self.expect(NL, "NEWLINE")
            self.expect_word("schema")
            self.expect(WS, "WHITESPACE")
            version_token = self.expect(VERSION, "SCHEMA_VERSION")
            version, version_span = version_token.text, _span(version_token)
            self.skip(WS)
        elif self.is_word(token, "module"):
            self.advance()
            self.expect(WS, "WHITESPACE")
            self.module = self.identifier("IDENTIFIER", plain=True).text
            self.skip(WS)
        else:
            raise self.fail(token, "{'model', 'module'}")

        types: list[TypeDef] = []
        extended: set[str] = set()
        while self.peek().kind == NL and (
            self.is_word(self.peek(1), "type") or self.is_word(self.peek(1), "extend")
        ):
            self.advance()
            types.append(self.type_def(extended))

        conditions: list[ConditionDef] = []
        seen_conditions: set[str] = set()
        while self.peek().kind == NL and self.is_word(self.peek(1), "condition"):
            self.advance()
            conditions.append(self.condition(seen_conditions))

        self.skip(NL)
        token = self.peek()
        if token.kind != EOF:
            raise self.fail(
                token, "{'type', 'condition', <EOF>}" if not conditions else "{'condition', <EOF>}"
            )
        return Model(version, tuple(types), tuple(conditions), self.module, version_span)

    def type_def(self, extended: set[str]) -> TypeDef:
        extend = False
        if self.is_word(self.peek(), "extend"):
            self.advance()
            self.expect(WS, "WHITESPACE")
            extend = True
        self.expect_word("type")
        self.expect(WS, "WHITESPACE")
        name_token = self.identifier("{IDENTIFIER, EXTENDED_IDENTIFIER}")
        name = name_token.text
        if extend:
            if self.module is None:
                self.report("extend can only be used in a modular model", name_token, SYNTAX_ERROR)
            elif name in extended:
                self.report(f"'{name}' is already extended in file.", name_token, SYNTAX_ERROR)
            extended.add(name)
        relations: list[RelationDef] = []
        if self.peek().kind == NL and self.is_word(self.peek(1), "relations"):
            self.advance()
            self.advance()
            seen: set[str] = set()
            while True:
                token = self.peek()
                if token.kind == EOF and relations:
                    break
                if token.kind != NL:
                    raise self.fail(token, "NEWLINE")
                if not self.is_word(self.peek(1), "define"):
                    if relations:
                        break
                    raise self.fail(self.peek(1), "'define'")
                self.advance()
                relation = self.relation_declaration()
                if relation.name in seen:
                    self.report(
                        f"'{relation.name}' is already defined in '{name}'",
                        relation.name_span,
                        "duplicated-error",
                        relation.name,
                    )
                seen.add(relation.name)
                relations.append(relation)
        token = self.peek()
        if token.kind not in (NL, EOF):
            raise self.fail(token, "{<EOF>, NEWLINE}")
        return TypeDef(name, tuple(relations), extend, _span(name_token), self.module)

    def relation_declaration(self) -> RelationDef:
        self.expect_word("define")
        self.expect(WS, "WHITESPACE")
        name_token = self.identifier("{IDENTIFIER, EXTENDED_IDENTIFIER}")
        self.skip(WS)
        self.expect(":", "':'")
        self.skip(WS)
        expr = self.relation_def(allow_direct=True)
        token = self.peek()
        if token.kind not in (NL, EOF):
            raise self.fail(token, "{<EOF>, NEWLINE}")
        return RelationDef(name_token.text, expr, _span(name_token))

    # ---- relation expressions ----------------------------------------------------------

    def relation_def(self, allow_direct: bool) -> Expr:
        first = self.operand(allow_direct)
        token = self.peek()
        following = self.peek(1)
        if token.kind != WS or not self._is_operator(following):
            return first
        op_text = following.text
        kind = _OPERATORS[op_text]
        children: list[Expr] = [first]
        while True:
            self.advance()
            self.advance()
            self.expect(WS, "WHITESPACE")
            children.append(self.operand(allow_direct=False))
            if kind == "difference":
                break
            if not (self.peek().kind == WS and self._is_operator(self.peek(1), op_text)):
                break
        span = _span_between(_expr_span(first), _expr_span(children[-1]))
        return Operation(kind, tuple(children), span)

    def _is_operator(self, token: Token, text: str | None = None) -> bool:
        if token.kind == BUT_NOT:
            return text in (None, "but not")
        return token.kind == WORD and token.text in ("or", "and") and text in (None, token.text)

    def operand(self, allow_direct: bool) -> Expr:
        token = self.peek()
        if token.kind == "[":
            if not allow_direct:
                raise self.fail(token, "{'(', IDENTIFIER, EXTENDED_IDENTIFIER}")
            return self.direct()
        if token.kind == "(":
            open_token = self.advance()
            self.skip(WS)
            inner = self.relation_def(allow_direct)
            self.skip(WS)
            close = self.expect(")", "{')', WHITESPACE}")
            return _with_span(inner, _span(open_token, close))
        if token.kind == WORD and token.text not in RESERVED_WORDS:
            return self.rewrite()
        expected = "{'[', '(', IDENTIFIER}" if allow_direct else "{'(', IDENTIFIER}"
        raise self.fail(token, expected)

    def rewrite(self) -> Expr:
        computed = self.identifier("{IDENTIFIER, EXTENDED_IDENTIFIER}")
        if self.peek().kind == WS and self.is_word(self.peek(1), "from"):
            self.advance()
            self.advance()
            self.expect(WS, "WHITESPACE")
            tupleset = self.identifier("{IDENTIFIER, EXTENDED_IDENTIFIER}")
            return FromTupleset(
                computed.text, tupleset.text, _span(computed, tupleset), _span(computed), _span(tupleset)
            )
        return Computed(computed.text, _span(computed))

    def direct(self) -> Direct:
        open_token = self.advance()
        restrictions: list[TypeRestriction] = []
        while True:
            self._skip_blank()
            restrictions.append(self.type_restriction())
            self._skip_blank()
            token = self.peek()
            if token.kind == ",":
                self.advance()
                continue
            if token.kind == "]":
                close = self.advance()
                return Direct(tuple(restrictions), _span(open_token, close))
            raise self.fail(token, "{',', WHITESPACE, ']'}")

    def _skip_blank(self) -> None:
        while self.peek().kind in (WS, NL):
            self.advance()

    def type_restriction(self) -> TypeRestriction:
        type_token = self.identifier("{IDENTIFIER, EXTENDED_IDENTIFIER}")
        last = type_token
        relation: str | None = None
        wildcard = False
        if self.peek().kind == ":":
            self.advance()
            last = self.expect("*", "'*'")
            wildcard = True
        elif self.peek().kind == "#":
            self.advance()
            last = self.identifier("{IDENTIFIER, EXTENDED_IDENTIFIER}")
            relation = last.text
        base_span = _span(type_token, last)
        condition: str | None = None
        condition_span = Span()
        if self.peek().kind == WS and self.is_word(self.peek(1), "with"):
            self.advance()
            self.advance()
            self.expect(WS, "WHITESPACE")
            cond_token = self.identifier("IDENTIFIER", plain=True)
            condition, condition_span, last = cond_token.text, _span(cond_token), cond_token
        return TypeRestriction(
            type_token.text,
            relation,
            wildcard,
            condition,
            _span(type_token, last),
            _span(type_token),
            base_span,
            condition_span,
        )

    # ---- conditions --------------------------------------------------------------------

    def condition(self, seen: set[str]) -> ConditionDef:
        keyword = self.expect_word("condition")
        self.expect(WS, "WHITESPACE")
        name_token = self.identifier("IDENTIFIER", plain=True)
        name = name_token.text
        if name in seen:
            self.report(f"condition '{name}' is already defined in the model", name_token, "duplicated-error")
        seen.add(name)
        self.skip(WS)
        self.expect("(", "'('")
        params: list[ConditionParam] = []
        names: set[str] = set()
        while True:
            self.skip(WS)
            self.skip(NL)
            param = self.condition_param()
            if param.name in names:
                self.report(
                    f"parameter '{param.name}' is already defined in the condition '{name}'",
                    param.name_span,
                    "duplicated-error",
                    param.name,
                )
            names.add(param.name)
            params.append(param)
            self.skip(WS)
            if self.peek().kind == ",":
                self.advance()
                continue
            self.skip(NL)
            self.expect(")", "{',', ')'}")
            break
        self.skip(WS)
        self.expect("{", "'{'")
        body = self.peek()
        text = ""
        expression_span = Span(body.line, body.column, body.line, body.column)
        if body.kind == CEL:
            self.advance()
            text = body.text.strip()
            leading = body.text[: len(body.text) - len(body.text.lstrip())]
            line, column = end_of(leading, body.line, body.column)
            end_line, end_column = end_of(text, line, column)
            expression_span = Span(line, column, end_line, end_column)
        close = self.expect("}", "'}'")
        if not text:
            raise self.fail(close, "a condition expression")
        return ConditionDef(
            name, tuple(params), text, _span(name_token), _span(keyword, close), expression_span, self.module
        )

    def condition_param(self) -> ConditionParam:
        token = self.peek()
        if (
            token.kind != WORD
            or token.text in PARAM_TYPES | PARAM_CONTAINERS | RESERVED_WORDS
            or not (_is_plain_identifier(token.text))
        ):
            raise self.fail(token, "{WHITESPACE, IDENTIFIER, NEWLINE}")
        name_token = self.advance()
        self.skip(WS)
        self.expect(":", "':'")
        self.skip(WS)
        type_token = self.peek()
        if type_token.kind == WORD and type_token.text in PARAM_TYPES:
            self.advance()
            type_name = type_token.text
        elif type_token.kind == WORD and type_token.text in PARAM_CONTAINERS:
            self.advance()
            self.expect("<", "'<'")
            inner = self.peek()
            if inner.kind != WORD or inner.text not in PARAM_TYPES:
                raise self.fail(inner, "CONDITION_PARAM_TYPE")
            self.advance()
            self.expect(">", "'>'")
            type_name = f"{type_token.text}<{inner.text}>"
        else:
            raise self.fail(type_token, "CONDITION_PARAM_TYPE")
        return ConditionParam(name_token.text, type_name, _span(name_token))


def _expr_span(expr: Expr) -> Span:
    return expr.span


def _with_span(expr: Expr, span: Span) -> Expr:
    """A parenthesised operation keeps the span of its parentheses; leaves keep their own."""
    if isinstance(expr, Operation):
        return Operation(expr.kind, expr.children, span)
    return expr


def parse_model(text: str) -> Model:
    """Parse OpenFGA DSL text into a :class:`Model`.

    Raises :class:`FgaSyntaxError` listing the grammar error (and any duplicate-name errors
    found before it).
    """
    parser = _Parser(text)
    try:
        model = parser.parse()
    except _Abort:
        raise FgaSyntaxError(parser.errors) from None
    if parser.errors:
        raise FgaSyntaxError(parser.errors)
    return model
