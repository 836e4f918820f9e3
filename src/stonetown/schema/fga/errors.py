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
    error type name (``syntax-error`` for grammar errors). ``file`` names the module file of a
    modular model the problem is in (empty for single-file models).
    """

    message: str
    category: str
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    symbol: str = ""
    file: str = ""

    def __str__(self) -> str:
        where = f" in {self.file}" if self.file else ""
        if self.line:
            return f"{self.category} error{where} at line={self.line}, column={self.column}: {self.message}"
        return f"{self.category} error{where}: {self.message}"


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


class FgaModFileError(FgaError):
    """An `fga.mod` file is not valid YAML of the expected shape (schema `1.2`, `.fga` contents)."""


class FgaModuleError(FgaError):
    """The files of a modular model cannot be combined, or the combined model is not valid.

    ``errors`` holds syntax errors of single files, combination errors (duplicate types or
    conditions, extensions of missing types, relations extended twice) and the validation
    errors of the combined model, each with the ``file`` it is in.
    """
