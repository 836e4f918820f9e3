"""The consistency harness: every query of the engine must agree with Check.

For a loaded system, every resource × permission × subject seen in the data is checked;
CheckBulk, LookupResources, LookupSubjects and the recursive Expand must give the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.expand import evaluate
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency, ExpandNode, Permissionship


@dataclass
class HarnessReport:
    """How much the harness cross-checked, and every disagreement it found."""

    pairs: int = 0
    disagreements: list[str] | None = None


def universe(relationships: list[Relationship]) -> tuple[set[ObjectRef], set[SubjectRef]]:
    """Objects and subjects named anywhere in the data (wildcards excluded from subjects)."""
    objects: set[ObjectRef] = set()
    subjects: set[SubjectRef] = set()
    for rel in relationships:
        objects.add(rel.resource)
        subjects.add(SubjectRef(rel.resource_type, rel.resource_id))
        if rel.subject_id != "*":
            objects.add(ObjectRef(rel.subject_type, rel.subject_id))
            subjects.add(rel.subject)
            subjects.add(SubjectRef(rel.subject_type, rel.subject_id))
    return objects, subjects


def _caveated(node: ExpandNode) -> bool:
    """True when any subject in the tree is stored with a caveat."""
    return any(node.subject_caveats) or any(_caveated(child) for child in node.children)


async def cross_check(system: PermissionSystem, relationships: list[Relationship]) -> HarnessReport:
    """Run the harness over `system` holding `relationships`."""
    assert system.state is not None
    schema = system.state.schema
    consistency = Consistency.fully_consistent()
    objects, subjects = universe(relationships)
    subjects = {
        s
        for s in subjects
        if s.type in schema.definitions
        and (not s.relation or s.relation in schema.definitions[s.type].relations)
    }
    report = HarnessReport(disagreements=[])
    problems = report.disagreements
    assert problems is not None
    answers: dict[tuple[ObjectRef, str, SubjectRef], CheckResult] = {}
    for obj in sorted(objects, key=str):
        definition = schema.definitions.get(obj.type)
        if definition is None:
            continue
        for permission in definition.relations:
            ordered = sorted(subjects, key=str)
            for subject in ordered:
                answers[(obj, permission, subject)] = await system.check(
                    obj, permission, subject, consistency
                )
                report.pairs += 1
            bulk = await system.check_bulk([CheckRequest(obj, permission, s) for s in ordered], consistency)
            for subject, item in zip(ordered, bulk, strict=True):
                single = answers[(obj, permission, subject)]
                if not isinstance(item, CheckResult) or item.permissionship is not single.permissionship:
                    problems.append(f"CheckBulk {obj}#{permission}@{subject}: {item} != {single}")
            tree, _ = await system.expand(obj, permission, consistency, recursive=True)
            denoted = evaluate(tree)
            # Expand does not evaluate caveats (it names them on the subjects, as SpiceDB
            # does), so it is comparable with Check only when no caveat is in the tree and
            # Check's answer is not conditional (a caveat on an arrow's tupleset is not named).
            for subject in ordered if not _caveated(tree) else ():
                if answers[(obj, permission, subject)].permissionship is Permissionship.CONDITIONAL:
                    continue
                allowed = answers[(obj, permission, subject)].permissionship is Permissionship.ALLOWED
                listed = denoted.contains(subject)
                # A subject set is also granted when the walk reaches it as a resource (it is a
                # member of itself), which Expand does not list; so for subject sets Expand
                # must only never list what Check denies.
                if listed != allowed and (not subject.relation or listed):
                    problems.append(f"Expand {obj}#{permission}: {subject} expand={listed} check={allowed}")
    # LookupResources vs Check
    types_with_objects = {o.type for o in objects}
    for rtype in sorted(types_with_objects):
        definition = schema.definitions.get(rtype)
        if definition is None:
            continue
        for permission in definition.relations:
            for subject in sorted(subjects, key=str):
                found = {
                    r.resource_id
                    async for r, _rev in system.lookup_resources(rtype, permission, subject, consistency)
                    if not r.conditional
                }
                expected = {
                    o.id
                    for o in objects
                    if o.type == rtype
                    and answers[(o, permission, subject)].permissionship is Permissionship.ALLOWED
                }
                if found != expected:
                    problems.append(
                        f"LookupResources {rtype}#{permission}@{subject}: got {sorted(found)}, "
                        f"check says {sorted(expected)}"
                    )
    # LookupSubjects vs Check
    shapes = {(s.type, s.relation) for s in subjects}
    for obj in sorted(objects, key=str):
        definition = schema.definitions.get(obj.type)
        if definition is None:
            continue
        for permission in definition.relations:
            for stype, srel in sorted(shapes):
                results = [
                    r async for r, _rev in system.lookup_subjects(obj, permission, stype, srel, consistency)
                ]
                concrete = {r.subject.id for r in results if r.subject.id != "*" and not r.conditional}
                wildcard = [r for r in results if r.subject.id == "*" and not r.conditional]
                excluded = set(wildcard[0].excluded) if wildcard else set()
                for subject in subjects:
                    if (subject.type, subject.relation) != (stype, srel):
                        continue
                    allowed = answers[(obj, permission, subject)].permissionship is Permissionship.ALLOWED
                    listed = subject.id in concrete or (bool(wildcard) and subject.id not in excluded)
                    if allowed != listed:
                        problems.append(
                            f"LookupSubjects {obj}#{permission} {stype}{'#' + srel if srel else ''}: "
                            f"{subject} listed={listed} check={allowed}"
                        )
                for cid in concrete:
                    subject = SubjectRef(stype, cid, srel)
                    known = answers.get((obj, permission, subject))
                    if known is not None and known.permissionship is not Permissionship.ALLOWED:
                        problems.append(f"LookupSubjects {obj}#{permission}: lists {subject}, check denies")
    return report
