"""Errors raised while importing an OpenFGA model.

Every problem is reported as an :class:`FgaErrorDetail` carrying a 1-based line and column
(the OpenFGA tools report 0-based ones) and OpenFGA's error category, e.g.
``relation-no-entry-point`` or ``missing-definition``.
"""

from __future__ import annotations

from dataclasses import dataclass

from stonetown.core.errors import InvalidArgument

SYNTAX_ERROR = "syntax-error"


@dataclass(frozen=True, slots=True)
class FgaErrorDetail:
    """One problem found in an OpenFGA model.

    ``line`` and ``column`` are 1-based, ``end_column`` is exclusive; all are 0 when the
    problem has no place in the text (e.g. a model given as JSON). ``category`` is OpenFGA's
    error type name (``syntax-error`` for grammar errors).
    """

    message: str
    category: str
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    symbol: str = ""

    def __str__(self) -> str:
        if self.line:
            return f"{self.category} error at line={self.line}, column={self.column}: {self.message}"
        return f"{self.category} error: {self.message}"


class FgaError(InvalidArgument):
    """Base class of OpenFGA import errors; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FgaErrorDetail]) -> None:
        self.errors: list[FgaErrorDetail] = list(errors)
        count = len(self.errors)
        head = f"{count} error{'' if count == 1 else 's'} occurred"
        super().__init__(head + ":\n" + "\n".join(f"\t* {e}" for e in self.errors))


class FgaSyntaxError(FgaError):
    """The text does not follow the OpenFGA DSL grammar (or repeats a name inside one block)."""


class FgaValidationError(FgaError):
    """The model parses but breaks an OpenFGA validation rule."""
