"""The schema language: SpiceDB schema text to a checked IR. Pure: no I/O.

Pipeline: :mod:`.lexer` → :mod:`.parser` (→ :mod:`.ast`) → :mod:`.compiler` (→ :mod:`.ir`)
→ :mod:`.checker`. :mod:`.formatter` prints an IR back as canonical text and
:mod:`.analysis` (networkx, imported lazily) builds the reachability graph and warnings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stonetown.schema import ast, ir
from stonetown.schema.checker import MAX_ARROW_TARGETS, check_schema
from stonetown.schema.compiler import compile_ast
from stonetown.schema.diagnostics import Diagnostic, SchemaError
from stonetown.schema.formatter import format_schema
from stonetown.schema.parser import (
    MAX_DEFINITIONS,
    MAX_NESTING_DEPTH,
    MAX_OPERANDS,
    MAX_RELATIONS,
    MAX_RELATIONS_PER_DEFINITION,
    MAX_SCHEMA_BYTES,
    MAX_SUBJECT_TYPES,
    parse_schema,
)

if TYPE_CHECKING:
    from stonetown.schema.analysis import Analysis, analyze

__all__ = [
    "MAX_ARROW_TARGETS",
    "MAX_DEFINITIONS",
    "MAX_NESTING_DEPTH",
    "MAX_OPERANDS",
    "MAX_RELATIONS",
    "MAX_RELATIONS_PER_DEFINITION",
    "MAX_SCHEMA_BYTES",
    "MAX_SUBJECT_TYPES",
    "Analysis",
    "Diagnostic",
    "SchemaError",
    "analyze",
    "ast",
    "check_schema",
    "compile_schema",
    "format_schema",
    "ir",
    "parse_schema",
]


def compile_schema(text: str, *, trusted: bool = False) -> ir.Schema:
    """Parse, compile and type-check schema text.

    Raises SchemaError (an InvalidArgument) whose ``diagnostics`` list every problem found at
    the first failing stage (syntax, then declarations, then references). `trusted`: the text
    was accepted before (a stored schema), see :func:`parse_schema`.
    """
    try:
        tree = parse_schema(text, trusted=trusted)
        schema, diagnostics = compile_ast(tree)
        if diagnostics:
            raise SchemaError(sorted(diagnostics, key=lambda d: (d.line, d.column)))
        diagnostics = check_schema(schema, limits=not trusted)
    except RecursionError:
        # Depth limits should make this unreachable; keep the promise of a clean error anyway.
        raise SchemaError([Diagnostic(1, 1, "schema nests too deeply to process")]) from None
    if diagnostics:
        raise SchemaError(diagnostics)
    return schema


def __getattr__(name: str) -> Any:
    # analysis pulls in networkx; load it only when asked for.
    if name in ("analyze", "Analysis"):
        from stonetown.schema import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
