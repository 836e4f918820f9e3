"""OpenFGA modeling language (DSL, schema 1.1) support: import to and export from the IR.

* :func:`import_fga` parses and validates DSL text with OpenFGA's rules and returns an
  :class:`~stonetown.schema.ir.Schema`; :func:`import_fga_json` does the same for the JSON
  form of a model (as the OpenFGA API takes it).
* :func:`import_fga_modules` combines the files of a modular model (`fga.mod` + module
  files, see :mod:`.modules`) into one schema.
* :func:`export_fga` writes an IR schema back as DSL where the constructs map.
* :func:`fga_write_relation` / :func:`fga_visible_relation` map OpenFGA relation names of
  tuples onto stored relations (see :mod:`.to_ir` for how mixed definitions are split).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stonetown.schema import ir
from stonetown.schema.fga.errors import (
    FgaError,
    FgaErrorDetail,
    FgaModFileError,
    FgaModuleError,
    FgaSyntaxError,
    FgaValidationError,
)
from stonetown.schema.fga.export import export_fga
from stonetown.schema.fga.json_model import model_from_json
from stonetown.schema.fga.modules import combine_fga_modules, import_fga_modules, parse_fga_mod
from stonetown.schema.fga.nodes import Model
from stonetown.schema.fga.parser import parse_model
from stonetown.schema.fga.to_ir import (
    HIDDEN_SUFFIX,
    fga_visible_relation,
    fga_write_relation,
    hidden_relation_name,
    model_to_ir,
)
from stonetown.schema.fga.validate import validate_model


def _checked(model: Model, server_rules: bool) -> ir.Schema:
    errors = validate_model(model, server_rules)
    if errors:
        raise FgaValidationError(errors)
    return model_to_ir(model)


def import_fga(text: str, *, server_rules: bool = True) -> ir.Schema:
    """Parse, validate and compile an OpenFGA DSL model.

    Raises :class:`FgaSyntaxError` for grammar errors and :class:`FgaValidationError` for
    models OpenFGA would reject; both are :class:`~stonetown.core.errors.InvalidArgument`.
    ``server_rules=False`` applies openfga/language's validator only, which accepts some
    models the OpenFGA server refuses (cycles of computed usersets, see :mod:`.validate`).
    """
    return _checked(parse_model(text), server_rules)


def import_fga_json(model: Mapping[str, Any], *, server_rules: bool = True) -> ir.Schema:
    """Validate and compile an OpenFGA model in its JSON form (already decoded)."""
    return _checked(model_from_json(model), server_rules)


__all__ = [
    "HIDDEN_SUFFIX",
    "FgaError",
    "FgaErrorDetail",
    "FgaModFileError",
    "FgaModuleError",
    "FgaSyntaxError",
    "FgaValidationError",
    "combine_fga_modules",
    "export_fga",
    "fga_visible_relation",
    "fga_write_relation",
    "hidden_relation_name",
    "import_fga",
    "import_fga_json",
    "import_fga_modules",
    "parse_fga_mod",
]
