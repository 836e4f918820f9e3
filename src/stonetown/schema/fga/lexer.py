"""Tokens of the OpenFGA DSL.

Like the reference implementation, the text is first cleaned line by line: a line whose
first non-blank character is `#` becomes empty, anything from ` #` on is dropped, and
trailing blanks are removed. Line and column numbers are unchanged by the cleaning.

Whitespace is significant in the grammar (operators need blanks around them), so runs of
blanks are tokens (``WS``); a ``NL`` token covers one or more line breaks and the blanks
around them. Keywords are ``WORD`` tokens; the parser decides where a word is a keyword.
The body of a condition (`{ ... }`) is one raw ``CEL`` token ending at the first `}` that is
not inside a string literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD = "WORD"
WS = "WS"
NL = "NL"
VERSION = "VERSION"
NUMBER = "NUMBER"
BUT_NOT = "BUT_NOT"
CEL = "CEL"
EOF = "EOF"
OTHER = "OTHER"
PUNCTUATION = frozenset(":,#[]()<>*{}")

_WORD_RE = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_\-]|[/.](?=[A-Za-z0-9_]))*")
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+")
_NUMBER_RE = re.compile(r"[0-9]+")
_WS_RE = re.compile(r"[ \t\f]+")
_NL_RE = re.compile(r"(?:[ \t\f]*(?:\r\n|\n|\r)[ \t\f]*)+")


@dataclass(frozen=True, slots=True)
class Token:
    """One token: kind, text, 1-based line and column of its first character."""

    kind: str
    text: str
    line: int
    column: int
    end_line: int
    end_column: int

    def describe(self) -> str:
        """The token as an error message shows it."""
        if self.kind == EOF:
            return "<EOF>"
        return repr(self.text).replace("\\\\", "\\")


def clean(text: str) -> str:
    """Blank out comments and trailing blanks the way OpenFGA's parser does before lexing."""
    lines = []
    for line in text.split("\n"):
        if line.lstrip()[:1] == "#":
            lines.append("")
            continue
        lines.append(line.split(" #")[0].rstrip())
    return "\n".join(lines)


def end_of(text: str, line: int, column: int) -> tuple[int, int]:
    """Line and column just after ``text`` when it starts at ``line``:``column``."""
    breaks = text.count("\n")
    if breaks == 0:
        return line, column + len(text)
    return line + breaks, len(text) - text.rfind("\n")


def _cel_end(text: str, start: int) -> int:
    """Index of the `}` closing a condition body starting at ``start`` (len(text) if none).

    A `}` inside a CEL string literal or `//` comment does not close the body.
    """
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "}":
            return i
        if text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if ch in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else ch
            raw = i > 0 and text[i - 1] in "rR"
            j = i + len(quote)
            while j < len(text) and not text.startswith(quote, j):
                if len(quote) == 1 and text[j] == "\n":
                    break
                j += 2 if text[j] == "\\" and not raw else 1
            i = j + len(quote)
            continue
        i += 1
    return len(text)


def tokenize(source: str) -> list[Token]:
    """Split cleaned DSL text into tokens; the list always ends with an ``EOF`` token."""
    text = clean(source)
    tokens: list[Token] = []
    pos = 0
    line, column = 1, 1

    def emit(kind: str, value: str) -> None:
        nonlocal pos, line, column
        end_line, end_column = end_of(value, line, column)
        tokens.append(Token(kind, value, line, column, end_line, end_column))
        pos += len(value)
        line, column = end_line, end_column

    while pos < len(text):
        ch = text[pos]
        match = _NL_RE.match(text, pos)
        if match:
            emit(NL, match.group(0))
            continue
        match = _WS_RE.match(text, pos)
        if match:
            emit(WS, match.group(0))
            continue
        if text.startswith("but not", pos):
            emit(BUT_NOT, "but not")
            continue
        match = _WORD_RE.match(text, pos)
        if match:
            emit(WORD, match.group(0))
            continue
        match = _VERSION_RE.match(text, pos)
        if match:
            emit(VERSION, match.group(0))
            continue
        match = _NUMBER_RE.match(text, pos)
        if match:
            emit(NUMBER, match.group(0))
            continue
        if ch == "{":
            emit("{", ch)
            end = _cel_end(text, pos)
            if end > pos:
                emit(CEL, text[pos:end])
            continue
        emit(ch if ch in PUNCTUATION else OTHER, ch)
    tokens.append(Token(EOF, "", line, column, line, column))
    return tokens
