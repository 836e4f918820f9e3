"""Diagnostics: one positioned message about schema text, and the error that carries them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stonetown.core.errors import InvalidArgument
from stonetown.schema.ir import Position

# Diagnostics an error's message lists; the rest are counted ("and 12 more").
MAX_LISTED_DIAGNOSTICS = 20


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A message about the schema text at a 1-based line and column (0:0 when unknown)."""

    line: int
    column: int
    message: str

    @classmethod
    def at(cls, pos: Position, message: str) -> Diagnostic:
        """A diagnostic at an IR position."""
        return cls(pos.line, pos.column, message)

    @property
    def pos(self) -> Position:
        """The position as an IR :class:`Position`."""
        return Position(self.line, self.column)

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in source order, duplicates removed."""
    return sorted(set(diagnostics), key=lambda d: (d.line, d.column, d.message))


class SchemaError(InvalidArgument):
    """The schema text is invalid; ``diagnostics`` says where and why (at least one entry)."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        if not self.diagnostics:
            self.diagnostics = [Diagnostic(0, 0, "invalid schema")]
        super().__init__(str(self))

    def __str__(self) -> str:
        listed = "\n".join(str(d) for d in self.diagnostics[:MAX_LISTED_DIAGNOSTICS])
        more = len(self.diagnostics) - MAX_LISTED_DIAGNOSTICS
        return f"{listed}\nand {more} more" if more > 0 else listed
