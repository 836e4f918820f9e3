"""The schema lexer: text to tokens, one at a time, with 1-based line and column.

Keywords (`definition`, `relation`, `with`, ...) are lexed as identifiers; the parser gives
them meaning by context, as SpiceDB does, so `relation with_container: ...` stays legal.
Comments are skipped; `/** doc */` comments are attached to the next token as ``docs``.
A caveat's CEL body is not tokenized: the parser asks for it as raw text with
:meth:`Lexer.read_caveat_body` right after the opening `{`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from stonetown.schema.diagnostics import Diagnostic


class TokenKind(Enum):
    """What a token is."""

    IDENT = "identifier"
    PUNCT = "punctuation"
    ARROW = "`->`"
    EOF = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, text, where it starts, and the doc comments just before it."""

    kind: TokenKind
    value: str
    line: int
    column: int
    offset: int
    end: int
    docs: tuple[str, ...] = ()

    def describe(self) -> str:
        """The token as an error message shows it."""
        if self.kind is TokenKind.EOF:
            return "end of input"
        return f"`{self.value}`"


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f\v]+)
    |(?P<doc>/\*\*(?!/).*?\*/)
    |(?P<block>/\*.*?\*/)
    |(?P<unterminated>/\*)
    |(?P<line>//[^\n]*)
    |(?P<ident>[^\W\d]\w*)
    |(?P<arrow>->)
    |(?P<punct>[{}()\[\]:;|\#*,<>=+&\-./])
    """,
    re.VERBOSE | re.DOTALL,
)

# Inside a CEL body: strings (with escapes, triple quotes), `//` comments, braces, other text.
_CEL_RE = re.compile(
    r"""
    (?P<string>[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
    |(?P<comment>//[^\n]*)
    |(?P<open>\{)
    |(?P<close>\})
    |(?P<other>[^{}'"/rRbB]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def normalize_doc(raw: str) -> str:
    """The text of a `/** ... */` comment: markers removed, each line stripped, leading `*` dropped.

    Idempotent with the formatter's output, so parse → format → parse keeps docs identical.
    """
    inner = raw[3:-2]
    lines: list[str] = []
    for line in inner.split("\n"):
        text = line.strip()
        if text.startswith("*"):
            text = text[1:]
            if text.startswith(" "):
                text = text[1:]
        lines.append(text.rstrip())
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


class Lexer:
    """A cursor over schema text that hands out tokens on demand."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0
        self.diagnostics: list[Diagnostic] = []

    def _advance_to(self, end: int) -> None:
        segment_newlines = self.text.count("\n", self.pos, end)
        if segment_newlines:
            self.line += segment_newlines
            self.line_start = self.text.rfind("\n", self.pos, end) + 1
        self.pos = end

    def _column(self, offset: int) -> int:
        return offset - self.line_start + 1

    def next_token(self) -> Token:
        """The next token; comments and whitespace are skipped, bad characters reported."""
        docs: list[str] = []
        text = self.text
        while self.pos < len(text):
            match = _TOKEN_RE.match(text, self.pos)
            start = self.pos
            if match is None:
                char = text[start]
                self.diagnostics.append(
                    Diagnostic(self.line, self._column(start), f"unexpected character {char!r}")
                )
                self._advance_to(start + 1)
                continue
            kind = match.lastgroup
            if kind == "unterminated":
                self.diagnostics.append(
                    Diagnostic(
                        self.line, self._column(start), "unterminated comment: `/*` has no closing `*/`"
                    )
                )
                self._advance_to(len(text))
                break
            line, column = self.line, self._column(start)
            self._advance_to(match.end())
            if kind == "doc":
                docs.append(normalize_doc(match.group()))
            elif kind == "ident":
                return Token(TokenKind.IDENT, match.group(), line, column, start, match.end(), tuple(docs))
            elif kind == "arrow":
                return Token(TokenKind.ARROW, "->", line, column, start, match.end(), tuple(docs))
            elif kind == "punct":
                return Token(TokenKind.PUNCT, match.group(), line, column, start, match.end(), tuple(docs))
        return Token(TokenKind.EOF, "", self.line, self._column(self.pos), self.pos, self.pos, tuple(docs))

    def read_caveat_body(self) -> tuple[str, int, int] | None:
        """Read raw CEL text up to the `}` matching an already consumed `{`.

        Returns (text stripped of surrounding whitespace, line, column of its first character),
        leaving the cursor after the closing `}`; None when the input ends first.
        """
        text = self.text
        depth = 1
        cursor = self.pos
        while cursor < len(text):
            match = _CEL_RE.match(text, cursor)
            assert match is not None  # the `.` alternative matches any character
            kind = match.lastgroup
            if kind == "open":
                depth += 1
            elif kind == "close":
                depth -= 1
                if depth == 0:
                    body = text[self.pos : cursor]
                    lead = len(body) - len(body.lstrip())
                    self._advance_to(self.pos + lead)
                    line, column = self.line, self._column(self.pos)
                    self._advance_to(cursor + 1)
                    return body.strip(), line, column
            cursor = match.end()
        return None
