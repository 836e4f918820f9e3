"""ZedTokens from authzed.api.v1 writes are honoured by every worker, as stonetown.v1 tokens are."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
from authzed.api.v1 import (
    CheckPermissionRequest,
    CheckPermissionResponse,
    Consistency,
    ObjectReference,
    Relationship,
    RelationshipUpdate,
    SubjectReference,
    WriteRelationshipsRequest,
)
from authzed.api.v1.permission_service_pb2_grpc import PermissionsServiceStub
from grpc_harness import SCHEMA, ServerProcess, wait_healthy

# A channel of its own (own subchannel pool, so its own TCP connection): the kernel spreads
# connections, not calls, across the workers listening on the port.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_authzed_tokens_are_honoured_across_workers(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        tmp_path,
        "--port", str(_free_port()), "--workers", "2", "--datastore", str(tmp_path / "st.db"),
        "--schema", "schema.zed",
        listeners=2,
    )  # fmt: skip
    try:
        wait_healthy(proc.address)
        for n in range(16):
            resource = ObjectReference(object_type="document", object_id=f"w{n}")
            subject = SubjectReference(object=ObjectReference(object_type="user", object_id=f"u{n}"))
            grant = Relationship(resource=resource, relation="viewer", subject=subject)
            with grpc.insecure_channel(proc.address, options=OWN_CONNECTION) as channel:
                token = (
                    PermissionsServiceStub(channel)
                    .WriteRelationships(
                        WriteRelationshipsRequest(
                            updates=[RelationshipUpdate(operation=2, relationship=grant)]
                        ),
                        timeout=30,
                    )
                    .written_at
                )
            with grpc.insecure_channel(proc.address, options=OWN_CONNECTION) as channel:
                answer = PermissionsServiceStub(channel).CheckPermission(
                    CheckPermissionRequest(resource=resource, permission="view", subject=subject,
                                           consistency=Consistency(at_least_as_fresh=token)),
                    timeout=30,
                )  # fmt: skip
            assert answer.permissionship == CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
        pids = {
            line.split("pid=")[1].split()[0] for line in proc.log().splitlines() if "event=listening" in line
        }
        assert len(pids) == 2
    finally:
        assert proc.stop() == 0
