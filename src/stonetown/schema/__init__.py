"""The schema language: SpiceDB schema text to a checked IR. Pure: no I/O."""
