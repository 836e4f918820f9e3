"""OpenFGA semantics over Stonetown's engine: a store answering Check, ListObjects and
ListUsers as the OpenFGA API does (:mod:`.store`), the OpenFGA matrix-test format
(:mod:`.matrix`), and `.fga.yaml` store test files (:mod:`.storefile`)."""

from stonetown.fgatest.conditions import ConditionOutcome, ConditionsUnavailable, resolve_condition
from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple

__all__ = [
    "ConditionOutcome",
    "ConditionsUnavailable",
    "FgaRequestError",
    "FgaStore",
    "FgaTuple",
    "resolve_condition",
]
