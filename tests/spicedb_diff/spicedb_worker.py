"""The real SpiceDB (v1.54, embedded) answering authzed.api.v1 calls as JSON lines.

Runs under the python of ../shared/tools/spicedb/spice_env.sh's venv (`spicedb-embedded` and
`authzed` from PyPI, SPICEDB_LIBRARY_PATH set), not the project's: the test process talks to
it through stdin/stdout, one JSON object a line.

    {"op": "reset"}                                          -> {"ok": true}  (a new empty instance)
    {"op": "call", "method": "CheckPermission", "request": B64, "timeout": 10}
        -> {"responses": [B64, ...]}       (one for a unary call, the stream's for a streaming one)
        -> {"error": {"code": "FAILED_PRECONDITION", "message": "...", "reason": ... | null,
                      "metadata": {...}, "source": "status" | "ffi"}}

Unary calls go through the library's FFI, which reports a failure only as Go's
"rpc error: code = X desc = Y" text: the status details (ErrorInfo) are lost there, so such
errors come back with `"reason": null, "source": "ffi"`. Streaming calls go through the
unix-socket gRPC proxy the library starts and keep their status details (`"source": "status"`).
"""

from __future__ import annotations

import base64
import ctypes
import json
import re
import sys
from typing import Any

import authzed.api.v1 as v1
import grpc
from authzed.api.v1 import permission_service_pb2 as permission
from authzed.api.v1.permission_service_pb2_grpc import PermissionsServiceStub
from google.rpc import error_details_pb2, status_pb2
from spicedb_embedded import EmbeddedSpiceDB, ffi

# spicedb-embedded 0.7.1 declares spicedb_free(c_char_p) but passes it an int on the error
# path, which turns every SpiceDB error into "argument 1: TypeError: wrong type".
ffi._get_lib().spicedb_free.argtypes = [ctypes.c_void_p]

UNARY = {
    "CheckPermission": ("permissions", ffi.spicedb_permissions_check_permission),
    "CheckBulkPermissions": ("permissions", ffi.spicedb_permissions_check_bulk_permissions),
    "WriteRelationships": ("permissions", ffi.spicedb_permissions_write_relationships),
    "DeleteRelationships": ("permissions", ffi.spicedb_permissions_delete_relationships),
    "ExpandPermissionTree": ("permissions", ffi.spicedb_permissions_expand_permission_tree),
    "WriteSchema": ("schema", ffi.spicedb_schema_write_schema),
    "ReadSchema": ("schema", ffi.spicedb_schema_read_schema),
}
STREAMING = ("LookupResources", "LookupSubjects", "ReadRelationships")
_FFI_ERROR = re.compile(r"rpc error: code = (\w+) desc = (.*)", re.S)


def _message_class(name: str) -> Any:
    return getattr(v1, name, None) or getattr(permission, name)


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).upper()


def _status_error(error: grpc.RpcError) -> dict[str, Any]:
    reason, metadata = None, {}
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
    return {
        "code": error.code().name,
        "message": error.details() or "",
        "reason": reason,
        "metadata": metadata,
        "source": "status",
    }


def _ffi_error(error: Exception) -> dict[str, Any]:
    text = str(error)
    found = _FFI_ERROR.search(text)
    code, message = (_snake(found.group(1)), found.group(2)) if found else ("UNKNOWN", text)
    return {"code": code, "message": message, "reason": None, "metadata": {}, "source": "ffi"}


class Worker:
    """One embedded SpiceDB instance at a time."""

    def __init__(self) -> None:
        self.instance: EmbeddedSpiceDB | None = None
        self.stub: PermissionsServiceStub | None = None

    def reset(self) -> dict[str, Any]:
        """Dispose the instance and start a new, empty one."""
        if self.instance is not None:
            self.instance.close()
        self.instance = EmbeddedSpiceDB.start()
        self.stub = PermissionsServiceStub(self.instance.channel())
        return {"ok": True}

    def call(self, method: str, request_b64: str, timeout: float) -> dict[str, Any]:
        """Answer one call: its responses (base64 protobuf) or its error."""
        assert self.instance is not None and self.stub is not None
        request = _message_class(f"{method}Request").FromString(base64.b64decode(request_b64))
        if method in UNARY:
            try:
                raw = UNARY[method][1](self.instance._handle, request.SerializeToString())
            except Exception as error:  # noqa: BLE001 - SpiceDBError or ctypes errors alike
                return {"error": _ffi_error(error)}
            return {"responses": [base64.b64encode(raw).decode()]}
        if method not in STREAMING:
            return {
                "error": {
                    "code": "UNIMPLEMENTED",
                    "message": f"{method} is not served embedded",
                    "reason": None,
                    "metadata": {},
                    "source": "worker",
                }
            }
        try:
            responses = list(getattr(self.stub, method)(request, timeout=timeout))
        except grpc.RpcError as error:
            return {"error": _status_error(error)}
        return {"responses": [base64.b64encode(r.SerializeToString()).decode() for r in responses]}


def main() -> None:
    """Serve JSON lines from stdin until it closes."""
    worker = Worker()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "reset":
            answer = worker.reset()
        else:
            answer = worker.call(command["method"], command["request"], command.get("timeout", 10))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
