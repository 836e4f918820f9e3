"""Helpers of the authzed.api.v1 tests (a module name of its own: tests/api has a conftest too)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

KEY = "authzed-test-key"


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The google.rpc.ErrorInfo in a failed call's status details, if any."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    assert status.code == error.code().value[0]
                    return info
    return None

