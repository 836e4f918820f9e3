"""Validation files (`zed validate` format): reading them and checking their claims."""

from stonetown.validation.files import ValidationFileError, load_validation_file, read_validation_file
from stonetown.validation.runner import main, validate_files

__all__ = ["ValidationFileError", "load_validation_file", "main", "read_validation_file", "validate_files"]
