"""Types shared by every layer: relationships, revisions, tokens and domain errors."""
