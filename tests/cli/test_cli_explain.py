"""`stonetown check --explain` and Check's `with_tracing` over a real server: the same
resolution tree the playground draws (engine/explain.py), as text, as JSON and as a message."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
from authzed.api.v1 import (
    CheckPermissionRequest,
    CheckPermissionResponse,
    Consistency,
    ObjectReference,
    SubjectReference,
)
from authzed.api.v1.permission_service_pb2_grpc import PermissionsServiceStub
from grpc_harness import ServerProcess, stonetown_command

from stonetown.api.pb import core, permission, permission_grpc

Runner = Callable[..., subprocess.CompletedProcess[str]]


def test_check_explain_prints_the_granting_path_and_the_denial(stonetown: Runner) -> None:
    for rel in ("team:x1#member@user:ana", "document:x1#editor@team:x1#member"):
        assert stonetown("rel", "touch", rel).returncode == 0
    for rel in ("document:x1#banned@user:bob", "document:x1#viewer@user:bob"):
        assert stonetown("rel", "touch", rel).returncode == 0
    allowed = stonetown("check", "--explain", "document:x1", "view", "user:ana")
    assert allowed.returncode == 0, allowed.stderr
    lines = allowed.stdout.splitlines()
    assert lines[0] == "allowed"
    assert lines[1].startswith("✓ document:x1#view  [")
    text = "\n".join(lines)
    assert "✓ document:x1#editor@team:x1#member — the subject is in team:x1#member" in text
    assert any("✓ team:x1#member@user:ana — a stored relationship" in line for line in lines)
    denied = stonetown("check", "--explain", "document:x1", "view", "user:bob")
    assert denied.returncode == 1
    assert "excluded: document:x1#banned holds" in denied.stdout
    as_json = json.loads(stonetown("check", "--json", "--explain", "document:x1", "view", "user:ana").stdout)
    assert as_json["allowed"] is True and as_json["trace"]["result"] == "ALLOWED"
    plain = json.loads(stonetown("check", "--json", "document:x1", "view", "user:ana").stdout)
    assert "trace" not in plain


def test_with_tracing_returns_the_tree_and_without_it_nothing(cli_server: ServerProcess) -> None:
    with grpc.insecure_channel(cli_server.address) as channel:
        stub = permission_grpc.PermissionServiceStub(channel)
        request = permission.CheckRequest(
            consistency=core.Consistency(fully_consistent=True),
            resource=core.ObjectReference(object_type="document", object_id="x2"),
            permission="view",
            subject=core.SubjectReference(object=core.ObjectReference(object_type="user", object_id="zed")),
            with_tracing=True,
        )
        metadata = (("authorization", "bearer k"),)
        traced = stub.Check(request, metadata=metadata, timeout=10)
        assert traced.permissionship == permission.PERMISSIONSHIP_NO_PERMISSION
        assert traced.debug_trace.label == "document:x2#view" and traced.debug_trace.children
        request.with_tracing = False
        assert not stub.Check(request, metadata=metadata, timeout=10).HasField("debug_trace")


# `banned` holds through two levels of subject sets: its evaluation meets a depth limit of 2
DEEP_SCHEMA = """
definition user {}
definition lone { relation member: user }
definition lzero { relation member: lone#member }
definition doc {
    relation owner: user
    relation banned: lzero#member
    permission view = owner - banned
}
"""


def test_a_skipped_branch_through_the_cli_and_both_apis(tmp_path: Path) -> None:
    """At `--max-depth 2`, bob (no owner) is denied by Check without evaluating `banned`;
    the explanation answers the same and shows `banned` skipped (the base does not hold) in
    `check --explain`, in stonetown.v1's trace (no value: UNSPECIFIED) and in SpiceDB's debug
    trace (not a sub-problem). Ana (owner, banned) meets the limit in Check and in Explain."""
    (tmp_path / "schema.zed").write_text(DEEP_SCHEMA)
    server = ServerProcess(
        tmp_path, "--port", "0", "--datastore", str(tmp_path / "st.db"), "--schema", "schema.zed",
        "--preshared-key", "k", "--max-depth", "2",
    )  # fmt: skip
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STONETOWN_")}
        env |= {"STONETOWN_ENDPOINT": server.address, "STONETOWN_PRESHARED_KEY": "k"}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                stonetown_command(*args), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
            )

        rels = ["lone:a#member@user:ana", "lzero:z#member@lone:a#member", "doc:d#banned@lzero:z#member"]
        assert run("rel", "touch", *rels, "doc:d#owner@user:ana").returncode == 0
        denied = run("check", "--explain", "doc:d", "view", "user:bob")
        assert denied.returncode == 1, denied.stderr
        assert "· doc:d#banned" in denied.stdout and "the base does not hold" in denied.stdout
        for explain in ((), ("--explain",)):
            args = ("check", *explain, "doc:d", "view", "user:ana")
            failed = run(*args)
            assert failed.returncode == 2 and "maximum depth of 2" in failed.stderr, (args, failed.stderr)
        metadata = (("authorization", "bearer k"),)
        with grpc.insecure_channel(server.address) as channel:
            request = permission.CheckRequest(
                consistency=core.Consistency(fully_consistent=True),
                resource=core.ObjectReference(object_type="doc", object_id="d"),
                permission="view",
                subject=core.SubjectReference(
                    object=core.ObjectReference(object_type="user", object_id="bob")
                ),
                with_tracing=True,
            )
            stub = permission_grpc.PermissionServiceStub(channel)
            traced = stub.Check(request, metadata=metadata, timeout=10)
            assert traced.permissionship == permission.PERMISSIONSHIP_NO_PERMISSION
            exclusion = traced.debug_trace.children[0]
            assert [(c.kind, c.label, c.result) for c in exclusion.children][1] == (
                "skipped", "doc:d#banned", permission.PERMISSIONSHIP_UNSPECIFIED
            )  # fmt: skip
            asked = CheckPermissionRequest(
                resource=ObjectReference(object_type="doc", object_id="d"), permission="view",
                subject=SubjectReference(object=ObjectReference(object_type="user", object_id="bob")),
                consistency=Consistency(fully_consistent=True), with_tracing=True,
            )  # fmt: skip
            spicedb = PermissionsServiceStub(channel).CheckPermission(asked, metadata=metadata, timeout=10)
            no = CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION
            assert spicedb.permissionship == no and spicedb.debug_trace.check.result == no
            assert [t.permission for t in spicedb.debug_trace.check.sub_problems.traces] == ["owner"]
    finally:
        server.stop()
