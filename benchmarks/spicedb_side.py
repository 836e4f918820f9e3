"""The SpiceDB side of `python -m benchmarks realistic`: run by the SpiceDB venv's python
(../shared/tools/spicedb/spice_env.sh: spicedb-embedded + authzed), not Stonetown's.

Usage: ``$SPY benchmarks/spicedb_side.py IN.json OUT.json``. IN holds the schema, the
relationships as tuples (``type:id#rel@type:id[#rel]``), checks, CheckBulk batches,
LookupResources and LookupSubjects queries; OUT gets the load time, per-call latencies (µs)
and the answers (for the agreement comparison made by the caller). Unary calls go through
FFI, the streaming lookups through the embedded instance's unix-socket gRPC proxy; every
query is fully consistent. Imports nothing from Stonetown.
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
import time
from typing import Any

from authzed.api.v1 import (
    CheckBulkPermissionsRequest,
    CheckBulkPermissionsRequestItem,
    CheckPermissionRequest,
    Consistency,
    LookupResourcesRequest,
    LookupSubjectsRequest,
    ObjectReference,
    Relationship,
    RelationshipUpdate,
    SubjectReference,
    WriteRelationshipsRequest,
)
from authzed.api.v1.permission_service_pb2_grpc import PermissionsServiceStub
from spicedb_embedded import EmbeddedSpiceDB, ffi

# spicedb-embedded 0.7.1 declares spicedb_free(c_char_p) but passes an int on the error path
ffi._get_lib().spicedb_free.argtypes = [ctypes.c_void_p]

FULL = Consistency(fully_consistent=True)
HAS = 2  # CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
TUPLE = re.compile(r"^(\w+):([^#]+)#(\w+)@(\w+):([^#]+)(?:#(\w+))?$")
WRITE_BATCH = 1000


def obj(text: str) -> ObjectReference:
    """`type:id` -> ObjectReference."""
    kind, _, oid = text.partition(":")
    return ObjectReference(object_type=kind, object_id=oid)


def subj(text: str) -> SubjectReference:
    """`type:id[#rel]` -> SubjectReference."""
    o, _, rel = text.partition("#")
    return SubjectReference(object=obj(o), optional_relation=rel)


def rel(text: str) -> Relationship:
    """A tuple -> Relationship."""
    m = TUPLE.match(text)
    if m is None:
        raise ValueError(f"bad tuple {text!r}")
    subject = SubjectReference(
        object=ObjectReference(object_type=m[4], object_id=m[5]), optional_relation=m[6] or ""
    )
    return Relationship(
        resource=ObjectReference(object_type=m[1], object_id=m[2]), relation=m[3], subject=subject
    )


def pct(values: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max of µs values."""
    if not values:
        return {}
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 1)

    return {
        "count": len(s),
        "p50_us": at(0.5),
        "p90_us": at(0.9),
        "p99_us": at(0.99),
        "max_us": round(s[-1], 1),
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, time and answer everything in `spec`."""
    out: dict[str, Any] = {}
    errors: list[str] = []
    out["errors"] = errors
    t0 = time.perf_counter()
    db = EmbeddedSpiceDB.start(spec["schema"], [])
    try:
        perms = db.permissions()
        rels = spec["relationships"]
        for i in range(0, len(rels), WRITE_BATCH):
            updates = [
                RelationshipUpdate(
                    operation=RelationshipUpdate.Operation.OPERATION_TOUCH, relationship=rel(r)
                )
                for r in rels[i : i + WRITE_BATCH]
            ]
            perms.WriteRelationships(WriteRelationshipsRequest(updates=updates))
        out["load_seconds"] = round(time.perf_counter() - t0, 3)
        out["relationships"] = len(rels)
        checks: dict[str, list[list[str]]] = spec["checks"]
        out["check"], out["check_answers"] = {}, {}
        deadline = time.perf_counter() + spec.get("check_seconds", 30.0)
        for kind, items in checks.items():
            times, answers = [], []
            for resource, permission, subject in items:
                if time.perf_counter() > deadline and times:
                    break
                c0 = time.perf_counter()
                try:
                    resp = perms.CheckPermission(
                        CheckPermissionRequest(
                            consistency=FULL,
                            resource=obj(resource),
                            permission=permission,
                            subject=subj(subject),
                        )
                    )
                except Exception as e:  # noqa: BLE001 - SpiceDB's errors are data here
                    errors.append(f"check {resource} {permission} {subject}: {e}"[:300])
                    answers.append(None)
                    continue
                times.append((time.perf_counter() - c0) * 1e6)
                answers.append(resp.permissionship == HAS)
            out["check"][kind] = pct(times)
            out["check_answers"][kind] = answers
        bulk_times, bulk_answers = [], []
        for batch in spec["bulk"]:
            items = [
                CheckBulkPermissionsRequestItem(resource=obj(r), permission=p, subject=subj(s))
                for r, p, s in batch
            ]
            c0 = time.perf_counter()
            try:
                resp = perms.CheckBulkPermissions(CheckBulkPermissionsRequest(consistency=FULL, items=items))
            except Exception as e:  # noqa: BLE001
                errors.append(f"check bulk: {e}"[:300])
                bulk_answers.extend([None] * len(items))
                continue
            bulk_times.append((time.perf_counter() - c0) * 1e6 / max(1, len(items)))
            bulk_answers.extend(
                pair.item.permissionship == HAS if pair.WhichOneof("response") == "item" else None
                for pair in resp.pairs
            )
        out["check_bulk_per_check"] = pct(bulk_times)
        out["bulk_answers"] = bulk_answers
        stub = PermissionsServiceStub(db.channel())
        lookups = (
            ("lookup_resources", spec["lookup_resources"], lambda q: (
                r.resource_object_id for r in stub.LookupResources(LookupResourcesRequest(
                    consistency=FULL, resource_object_type=q[0], permission=q[1], subject=subj(q[2])),
                    timeout=600)
            )),
            ("lookup_subjects", spec["lookup_subjects"], lambda q: (
                s.subject.subject_object_id for s in stub.LookupSubjects(LookupSubjectsRequest(
                    consistency=FULL, resource=obj(q[0]), permission=q[1], subject_object_type=q[2]),
                    timeout=600)
            )),
        )  # fmt: skip
        for name, queries, call in lookups:
            out[name] = []
            for q in queries:
                c0 = time.perf_counter()
                try:
                    found: list[str] | None = sorted(set(call(q)))
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{name} {q}: {e}"[:300])
                    found = None
                out[name].append({"ms": round((time.perf_counter() - c0) * 1e3, 1), "ids": found})
    finally:
        db.close()
    return out


def main() -> int:
    """IN.json -> OUT.json."""
    spec = json.loads(open(sys.argv[1]).read())
    with open(sys.argv[2], "w") as handle:
        json.dump(run(spec), handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
