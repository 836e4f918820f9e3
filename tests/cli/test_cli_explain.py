"""`stonetown check --explain` and Check's `with_tracing` over a real server: the same
resolution tree the playground draws (engine/explain.py), as text, as JSON and as a message."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import grpc
from grpc_harness import ServerProcess

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
