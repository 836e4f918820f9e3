"""The schema parser: tokens to :class:`~stonetown.schema.ast.SchemaFile`.

A hand-written recursive-descent parser. Permission expressions use precedence climbing with
SpiceDB's precedence: `+` binds tightest, then `&`, then `-`, all left-associative; arrows
bind tighter than every operator. Parenthesis nesting is capped by an explicit counter so
hostile input gets a clear error instead of a RecursionError.

On a syntax error the parser records a diagnostic and skips to the next relation, permission
or top-level declaration, so one run reports several errors.

Every size the text controls has a limit (bytes, definitions, relations, subject types,
operands, nesting); going over one stops the parse with an error naming the limit at the
line:column where it was crossed. SpiceDB's keywords are refused as names, as SpiceDB does.
A *trusted* parse (a schema already stored) skips the counts and the keyword rule, so a
schema accepted once always loads again.
"""

from __future__ import annotations

from typing import Literal, NoReturn

from stonetown.schema import ast
from stonetown.schema.diagnostics import Diagnostic, SchemaError
from stonetown.schema.lexer import Lexer, Token, TokenKind

MAX_SCHEMA_BYTES = 1024 * 1024
MAX_NESTING_DEPTH = 50
MAX_DIAGNOSTICS = 50
MAX_DEFINITIONS = 2000  # definitions and caveats together
MAX_RELATIONS = 10_000  # relations and permissions in the whole schema
MAX_RELATIONS_PER_DEFINITION = 1000
MAX_SUBJECT_TYPES = 64  # allowed subject types of one relation
MAX_OPERANDS = 256  # relations, arrows and `nil` in one permission expression

# SpiceDB's lexer keywords: never a name. `expiration` and `and` become keywords with
# `use expiration`.
RESERVED_WORDS = frozenset({"definition", "caveat", "relation", "permission", "nil", "with"})
EXPIRATION_WORDS = frozenset({"expiration", "and"})

_PRECEDENCE = {"-": 1, "&": 2, "+": 3}
_TOP_LEVEL_KEYWORDS = frozenset({"definition", "caveat", "use"})
_MEMBER_KEYWORDS = frozenset({"relation", "permission"})


class _SyntaxError(Exception):
    """Internal: unwinds to the nearest recovery point."""


class _TooManyErrors(Exception):
    """Internal: stop parsing, enough has been reported."""


class _OverLimit(Exception):
    """Internal: stop parsing, a size limit was crossed (already reported)."""


def check_size(text: str) -> None:
    """Raise SchemaError when ``text`` is larger than :data:`MAX_SCHEMA_BYTES` in UTF-8."""
    size = len(text)
    if size <= MAX_SCHEMA_BYTES // 4:
        return  # at most 4 bytes per character: cannot be over the limit
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SCHEMA_BYTES:
        raise SchemaError(
            [Diagnostic(1, 1, f"schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES} bytes")]
        )


def parse_schema(text: str, *, trusted: bool = False) -> ast.SchemaFile:
    """Parse schema text into a syntax tree; raise SchemaError listing every syntax error found.

    `trusted`: the text was accepted before (a stored schema): the count limits and the
    keyword rule are not applied, so it loads whatever the limits are now.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError([Diagnostic(1, 1, f"schema is not valid UTF-8: {exc.reason}")]) from None
    if not isinstance(text, str):
        raise SchemaError([Diagnostic(0, 0, f"schema must be text, not {type(text).__name__}")])
    if not trusted:
        check_size(text)
    return Parser(text, trusted=trusted).parse()


class Parser:
    """Parses one schema text. Use :func:`parse_schema`."""

    def __init__(self, text: str, *, trusted: bool = False) -> None:
        self.lexer = Lexer(text)
        self.diagnostics: list[Diagnostic] = []
        self.tok: Token = self.lexer.next_token()
        self.trusted = trusted
        self.reserved = RESERVED_WORDS
        self.declarations = 0
        self.relations = 0
        self.operands = 0
        self.operand_limit = "operands in a permission"

    # ---- helpers ---------------------------------------------------------------------------

    def _advance(self) -> Token:
        tok = self.tok
        self.tok = self.lexer.next_token()
        return tok

    def _error(self, tok: Token, message: str) -> NoReturn:
        self._report(tok.line, tok.column, message)
        raise _SyntaxError

    def _report(self, line: int, column: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(line, column, message))
        if len(self.diagnostics) + len(self.lexer.diagnostics) >= MAX_DIAGNOSTICS:
            raise _TooManyErrors

    def _is_punct(self, value: str) -> bool:
        return self.tok.kind is TokenKind.PUNCT and self.tok.value == value

    def _is_keyword(self, value: str) -> bool:
        return self.tok.kind is TokenKind.IDENT and self.tok.value == value

    def _expect_punct(self, value: str, context: str) -> Token:
        if not self._is_punct(value):
            self._error(self.tok, f"expected `{value}` {context}, found {self.tok.describe()}")
        return self._advance()

    def _expect_ident(self, what: str, keyword_ok: bool = False) -> ast.Name:
        tok = self.tok
        if tok.kind is not TokenKind.IDENT:
            self._error(tok, f"expected {what}, found {tok.describe()}")
        if not keyword_ok:
            self._refuse_keyword(tok, what)
        self._advance()
        return ast.Name(tok.value, tok.line, tok.column)

    def _refuse_keyword(self, tok: Token, what: str) -> None:
        if tok.value in self.reserved and not self.trusted:
            self._error(
                tok, f"expected {what}, found the keyword `{tok.value}` (reserved in the schema language)"
            )

    def _count(self, tok: Token, count: int, limit: int, what: str) -> None:
        """Stop the parse at `tok` when `count` (including it) is over `limit`."""
        if count > limit and not self.trusted:
            self.diagnostics.append(
                Diagnostic(tok.line, tok.column, f"too many {what}: the limit is {limit}")
            )
            raise _OverLimit

    def _path(self, what: str) -> ast.Name:
        """An identifier or a `/`-separated path: `user`, `docs/document`, `a/b/c`."""
        first = self._expect_ident(what)
        parts = [first.value]
        while self._is_punct("/"):
            self._advance()
            parts.append(self._expect_ident(f"a name after `/` in {what}").value)
        return ast.Name("/".join(parts), first.line, first.column)

    @staticmethod
    def _doc(tok: Token) -> str | None:
        return "\n".join(tok.docs) if tok.docs else None

    # ---- top level -------------------------------------------------------------------------

    def parse(self) -> ast.SchemaFile:
        """Parse the whole text; raise SchemaError if anything was wrong."""
        items: list[ast.TopLevel] = []
        try:
            while self.tok.kind is not TokenKind.EOF:
                if self._is_punct(";"):
                    self._advance()
                    continue
                try:
                    items.append(self._top_level())
                except _SyntaxError:
                    self._sync_top_level()
        except _TooManyErrors:
            self.diagnostics.append(
                Diagnostic(self.tok.line, self.tok.column, "too many errors; stopped parsing here")
            )
        except _OverLimit:
            pass  # reported where the limit was crossed
        diagnostics = self.lexer.diagnostics + self.diagnostics
        if diagnostics:
            raise SchemaError(sorted(diagnostics, key=lambda d: (d.line, d.column)))
        return ast.SchemaFile(tuple(items))

    def _sync_top_level(self) -> None:
        while self.tok.kind is not TokenKind.EOF:
            if self.tok.kind is TokenKind.IDENT and self.tok.value in _TOP_LEVEL_KEYWORDS:
                return
            self._advance()

    def _top_level(self) -> ast.TopLevel:
        tok = self.tok
        if self._is_keyword("definition") or self._is_keyword("caveat"):
            self.declarations += 1
            self._count(tok, self.declarations, MAX_DEFINITIONS, "definitions and caveats in the schema")
            return self._definition() if tok.value == "definition" else self._caveat()
        if self._is_keyword("use"):
            self._advance()
            flag = self._expect_ident("a flag name after `use`", keyword_ok=True)
            if flag.value == "expiration":
                self.reserved = RESERVED_WORDS | EXPIRATION_WORDS
            return ast.UseDecl(flag, tok.line, tok.column)
        self._error(tok, f"expected `definition`, `caveat` or `use`, found {tok.describe()}")

    # ---- definitions -----------------------------------------------------------------------

    def _definition(self) -> ast.DefinitionDecl:
        keyword = self._advance()
        name = self._path("a definition name")
        self._expect_punct("{", f"to open definition `{name.value}`")
        members: list[ast.RelationDecl | ast.PermissionDecl] = []
        while not self._is_punct("}"):
            if self.tok.kind is TokenKind.EOF:
                self._error(
                    self.tok,
                    f"definition `{name.value}` opened at {keyword.line}:{keyword.column} "
                    "is missing its `}`",
                )
            if self._is_keyword("relation") or self._is_keyword("permission"):
                self.relations += 1
                self._count(
                    self.tok, self.relations, MAX_RELATIONS, "relations and permissions in the schema"
                )
                self._count(
                    self.tok,
                    len(members) + 1,
                    MAX_RELATIONS_PER_DEFINITION,
                    f"relations and permissions in definition `{name.value}`",
                )
            try:
                member = self._member()
                if member is not None:
                    members.append(member)
            except _SyntaxError:
                self._sync_member()
        self._advance()
        return ast.DefinitionDecl(name, tuple(members), self._doc(keyword), keyword.line, keyword.column)

    def _sync_member(self) -> None:
        while self.tok.kind is not TokenKind.EOF:
            if self._is_punct("}"):
                return
            if self.tok.kind is TokenKind.IDENT and self.tok.value in _MEMBER_KEYWORDS:
                return
            if self.tok.kind is TokenKind.IDENT and self.tok.value in _TOP_LEVEL_KEYWORDS:
                # Likely a missing `}`: let the definition loop report it at this token.
                return
            self._advance()

    def _member(self) -> ast.RelationDecl | ast.PermissionDecl | None:
        tok = self.tok
        if self._is_punct(";"):
            self._advance()
            return None
        if self._is_keyword("relation"):
            member: ast.RelationDecl | ast.PermissionDecl = self._relation()
        elif self._is_keyword("permission"):
            member = self._permission()
        elif tok.kind is TokenKind.IDENT and tok.value in _TOP_LEVEL_KEYWORDS:
            self._error(tok, f"expected `}}` to close the definition before {tok.describe()}")
        else:
            self._error(tok, f"expected `relation`, `permission` or `}}`, found {tok.describe()}")
        self._end_of_member(member)
        return member

    def _end_of_member(self, member: ast.RelationDecl | ast.PermissionDecl) -> None:
        if self._is_punct(";"):
            self._advance()
            return
        if self._is_punct("}") or self.tok.kind is TokenKind.EOF:
            return
        if self.tok.kind is TokenKind.IDENT and self.tok.value in _MEMBER_KEYWORDS | _TOP_LEVEL_KEYWORDS:
            return
        kind = "relation" if isinstance(member, ast.RelationDecl) else "permission"
        self._error(self.tok, f"unexpected {self.tok.describe()} after {kind} `{member.name.value}`")

    def _relation(self) -> ast.RelationDecl:
        keyword = self._advance()
        name = self._expect_ident("a relation name")
        self._expect_punct(":", f"after relation name `{name.value}`")
        types = [self._type_ref()]
        while self._is_punct("|"):
            self._advance()
            self._count(
                self.tok, len(types) + 1, MAX_SUBJECT_TYPES, f"subject types on relation `{name.value}`"
            )
            types.append(self._type_ref())
        return ast.RelationDecl(name, tuple(types), self._doc(keyword), keyword.line, keyword.column)

    def _type_ref(self) -> ast.TypeRef:
        type_name = self._path("a subject type")
        relation: ast.Name | None = None
        wildcard = False
        if self._is_punct(":"):
            self._advance()
            self._expect_punct("*", f"after `{type_name.value}:` (only `{type_name.value}:*` is allowed)")
            wildcard = True
        elif self._is_punct("#"):
            self._advance()
            relation = self._expect_ident(f"a relation name after `{type_name.value}#`")
        caveat: ast.Name | None = None
        expiration: ast.Name | None = None
        if self._is_keyword("with"):
            self._advance()
            if self._is_keyword("expiration"):
                tok = self._advance()
                expiration = ast.Name(tok.value, tok.line, tok.column)
            else:
                caveat = self._path("a caveat name or `expiration` after `with`")
                if self._is_keyword("and"):
                    self._advance()
                    if not self._is_keyword("expiration"):
                        self._error(
                            self.tok, f"expected `expiration` after `and`, found {self.tok.describe()}"
                        )
                    tok = self._advance()
                    expiration = ast.Name(tok.value, tok.line, tok.column)
        return ast.TypeRef(
            type_name, relation, wildcard, caveat, expiration, type_name.line, type_name.column
        )

    def _permission(self) -> ast.PermissionDecl:
        keyword = self._advance()
        name = self._expect_ident("a permission name")
        self._expect_punct("=", f"after permission name `{name.value}`")
        self.operands = 0
        self.operand_limit = f"operands in permission `{name.value}`"
        expression = self._binary(1, 0)
        return ast.PermissionDecl(name, expression, self._doc(keyword), keyword.line, keyword.column)

    # ---- expressions -----------------------------------------------------------------------

    def _binary(self, min_precedence: int, depth: int) -> ast.Expr:
        left = self._operand(depth)
        while True:
            tok = self.tok
            precedence = _PRECEDENCE.get(tok.value) if tok.kind is TokenKind.PUNCT else None
            if precedence is None or precedence < min_precedence:
                return left
            operator: Literal["+", "&", "-"] = tok.value  # type: ignore[assignment]
            operands = [left]
            while self._is_punct(operator):
                self._advance()
                operands.append(self._binary(precedence + 1, depth))
            left = ast.OperatorExpr(operator, tuple(operands), left.line, left.column)

    def _operand(self, depth: int) -> ast.Expr:
        tok = self.tok
        if self._is_punct("("):
            if depth >= MAX_NESTING_DEPTH:
                self._error(tok, f"expression nests more than {MAX_NESTING_DEPTH} parentheses deep")
            self._advance()
            inner = self._binary(1, depth + 1)
            self._expect_punct(")", f"to close the `(` at {tok.line}:{tok.column}")
            return inner
        if tok.kind is not TokenKind.IDENT:
            self._error(tok, f"expected a relation, permission, `nil` or `(`, found {tok.describe()}")
        self.operands += 1
        self._count(tok, self.operands, MAX_OPERANDS, self.operand_limit)
        if tok.value == "nil":
            self._advance()
            return ast.NilExpr(tok.line, tok.column)
        self._refuse_keyword(tok, "a relation or permission")
        self._advance()
        left = ast.Name(tok.value, tok.line, tok.column)
        function: Literal["any", "all"] | None
        if self.tok.kind is TokenKind.ARROW:
            self._advance()
            right = self._expect_ident(f"a relation or permission after `{tok.value}->`")
            function = None
        elif self._is_punct("."):
            self._advance()
            func = self._expect_ident(f"`any` or `all` after `{tok.value}.`")
            if func.value not in ("any", "all"):
                self._report(
                    func.line, func.column, f"unknown arrow function `{func.value}`: expected `any` or `all`"
                )
                raise _SyntaxError
            function = "any" if func.value == "any" else "all"
            self._expect_punct("(", f"after `{tok.value}.{func.value}`")
            right = self._expect_ident(f"a relation or permission in `{tok.value}.{func.value}(...)`")
            self._expect_punct(")", f"to close `{tok.value}.{func.value}(`")
        else:
            return ast.IdentifierExpr(left, tok.line, tok.column)
        if self.tok.kind is TokenKind.ARROW or self._is_punct("."):
            self._error(
                self.tok, "nested arrows are not supported: the left side of an arrow must be a relation"
            )
        return ast.ArrowExpr(left, right, function, tok.line, tok.column)

    # ---- caveats ---------------------------------------------------------------------------

    def _caveat(self) -> ast.CaveatDecl:
        keyword = self._advance()
        name = self._path("a caveat name")
        self._expect_punct("(", f"to open the parameters of caveat `{name.value}`")
        parameters: list[ast.CaveatParam] = []
        while not self._is_punct(")"):
            param_name = self._expect_ident(f"a parameter name in caveat `{name.value}`")
            param_type = self._caveat_type(0)
            parameters.append(ast.CaveatParam(param_name, param_type, param_name.line, param_name.column))
            if not self._is_punct(","):
                break
            self._advance()
        self._expect_punct(")", f"to close the parameters of caveat `{name.value}`")
        brace = self._expect_punct("{", f"to open the expression of caveat `{name.value}`")
        # The lexer sits right after `{` now: `self.tok` was lexed before the `{` was consumed,
        # so it is the token after `{`; rewind the lexer to the brace to read raw text.
        self._rewind_to(brace)
        body = self.lexer.read_caveat_body()
        if body is None:
            self._report(
                brace.line, brace.column, f"caveat `{name.value}` expression is missing its closing `}}`"
            )
            self.tok = Token(
                TokenKind.EOF, "", brace.line, brace.column, len(self.lexer.text), len(self.lexer.text)
            )
            raise _SyntaxError
        expression, line, column = body
        self.tok = self.lexer.next_token()
        return ast.CaveatDecl(
            name,
            tuple(parameters),
            expression,
            line,
            column,
            self._doc(keyword),
            keyword.line,
            keyword.column,
        )

    def _rewind_to(self, brace: Token) -> None:
        lexer = self.lexer
        lexer.pos = brace.end
        lexer.line = brace.line
        lexer.line_start = brace.offset - (brace.column - 1)
        # Diagnostics the lexer raised while reading ahead (inside CEL text) do not apply.
        lexer.diagnostics = [d for d in lexer.diagnostics if (d.line, d.column) < (brace.line, brace.column)]

    def _caveat_type(self, depth: int) -> ast.CaveatType:
        if depth >= MAX_NESTING_DEPTH:
            self._error(self.tok, f"caveat parameter type nests more than {MAX_NESTING_DEPTH} levels deep")
        name = self._expect_ident("a parameter type")
        arguments: list[ast.CaveatType] = []
        if self._is_punct("<"):
            self._advance()
            arguments.append(self._caveat_type(depth + 1))
            while self._is_punct(","):
                self._advance()
                arguments.append(self._caveat_type(depth + 1))
            self._expect_punct(">", f"to close `{name.value}<`")
        return ast.CaveatType(name, tuple(arguments))
