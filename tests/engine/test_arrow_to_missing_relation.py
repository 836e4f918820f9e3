"""An arrow naming a relation none of its subject types has (`parent->nothere`): SpiceDB v1.54
accepts the schema (its lint warns) and the arrow grants nothing; `.all()` over such subjects
is false. The answers below are SpiceDB v1.54's own for this schema and data (embedded engine,
../shared/tools/spicedb), so a schema SpiceDB users have loads here and answers the same."""

from __future__ import annotations

from pathlib import Path

from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency
from stonetown.schema import compile_schema
from stonetown.schema.lint import lint
from stonetown.stores.memory import MemoryDatastore
from stonetown.validation.files import parse_validation_text
from stonetown.validation.runner import load_into

FILE = """\
schema: |-
  definition user {}
  definition folder {
   relation viewer: user
  }
  definition doc {
   relation parent: user | folder
   relation viewer: user
   permission view = viewer + parent->nothere + parent->viewer
   permission strict = viewer & parent.all(nothere)
   permission only = parent->nothere
  }
relationships: |-
  doc:d1#parent@user:u1
  doc:d1#viewer@user:u2
  doc:d2#parent@folder:f1
  folder:f1#viewer@user:u3
  doc:d3#viewer@user:u1
  doc:d3#parent@user:u1
"""
FRESH = Consistency.fully_consistent()
# SpiceDB v1.54's CheckBulkPermissions answers: (doc, permission) -> users granted
GRANTED = {
    ("d1", "view"): {"u2"},
    ("d2", "view"): {"u3"},
    ("d3", "view"): {"u1"},
}


def test_the_schema_is_accepted_with_a_lint_warning() -> None:
    schema = compile_schema(FILE.split("|-\n", 1)[1].split("relationships:")[0])
    warnings = [w.message for w in lint(schema)]
    assert any(
        'Arrow `parent->nothere` under permission "view"' in m and "does not exist on any subject types" in m
        for m in warnings
    ), warnings
    assert any('Arrow `parent.all(nothere)` under permission "strict"' in m for m in warnings), warnings


async def test_the_arrow_grants_nothing_as_in_spicedb() -> None:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        assert await load_into(system, parse_validation_text(FILE, Path("arrow.yaml"))) == []
        for doc in ("d1", "d2", "d3"):
            for permission in ("view", "strict", "only"):
                for user in ("u1", "u2", "u3"):
                    result = await system.check(
                        ObjectRef("doc", doc), permission, SubjectRef("user", user), FRESH
                    )
                    expected = user in GRANTED.get((doc, permission), set())
                    assert result.allowed == expected, (doc, permission, user)
        found = {
            (permission, r.resource_id)
            for permission in ("view", "strict", "only")
            async for r, _ in system.lookup_resources("doc", permission, SubjectRef("user", "u1"), FRESH)
        }
        assert found == {("view", "d3")}  # SpiceDB's LookupResources for user:u1
        for doc in ("d1", "d2", "d3"):
            subjects = [
                s async for s, _ in system.lookup_subjects(ObjectRef("doc", doc), "only", "user", "", FRESH)
            ]
            assert subjects == []
    finally:
        await system.stop()
