"""Preshared-key authentication, TLS, and the refusal to expose an unauthenticated server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_harness import SCHEMA, ServerProcess, self_signed_certificate, stonetown_command, wait_healthy
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import Unauthenticated

KEY = "s3cret-key"
FRESH = ReadConsistency.fully_consistent()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that requires the preshared key (given through the environment)."""
    workdir = tmp_path_factory.mktemp("auth")
    (workdir / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        workdir,
        "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", "schema.zed",
        env={"STONETOWN_PRESHARED_KEY": KEY},
    )  # fmt: skip
    yield proc
    proc.stop()


def test_calls_without_or_with_a_wrong_key_are_refused_and_change_nothing(keyed: ServerProcess) -> None:
    with Client(keyed.address, preshared_key=KEY) as good:
        before = sorted(str(r) for r in good.read("document", consistency=FRESH))
        for bad in (Client(keyed.address), Client(keyed.address, preshared_key=KEY + "x")):
            with bad:
                with pytest.raises(Unauthenticated):
                    bad.write(touch=["document:auth#viewer@user:mallory"])
                with pytest.raises(Unauthenticated):
                    bad.check("document:auth", "view", "user:mallory")
                with pytest.raises(Unauthenticated):
                    list(bad.read("document"))
                with pytest.raises(Unauthenticated):
                    bad.write_schema("definition user {}")
        assert sorted(str(r) for r in good.read("document", consistency=FRESH)) == before
        good.write(touch=["document:auth#viewer@user:ana"])
        assert good.check("document:auth", "view", "user:ana", consistency=FRESH).allowed
        assert good.read_schema().text.strip() == SCHEMA.strip()


def test_health_is_open_and_reflection_needs_the_key(keyed: ServerProcess) -> None:
    wait_healthy(keyed.address)
    with grpc.insecure_channel(keyed.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        responses = list(
            stub.ServerReflectionInfo(
                iter([request]), metadata=[("authorization", f"Bearer {KEY}")], timeout=10
            )
        )
        names = {s.name for s in responses[0].list_services_response.service}
        assert {"stonetown.v1.PermissionService", "stonetown.v1.RelationshipService"} <= names
        assert "stonetown.v1.SchemaService" in names and "grpc.health.v1.Health" in names


def test_non_loopback_without_key_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        stonetown_command("serve", "--host", "0.0.0.0", "--port", "0", "--datastore", "memory"),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "without --preshared-key" in result.stderr


def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    (tmp_path / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        tmp_path,
        "--port", "0", "--datastore", "memory", "--schema", "schema.zed",
        "--tls-cert", str(cert), "--tls-key", str(key), "--preshared-key", KEY,
    )  # fmt: skip
    try:
        with Client(proc.address, ca_cert=str(cert), preshared_key=KEY) as client:
            client.write(touch=["document:tls#viewer@user:ana"])
            assert client.check("document:tls", "view", "user:ana", consistency=FRESH).allowed
        with Client(proc.address, preshared_key=KEY, timeout=5) as plaintext:
            with pytest.raises(Exception) as info:
                plaintext.read_schema()
            assert getattr(info.value, "code", "") == "UNAVAILABLE"
    finally:
        assert proc.stop() == 0


def _serve_fails(workdir: Path, *args: str) -> str:
    """Run `stonetown serve ARGS` expecting it to refuse to start; its stderr."""
    result = subprocess.run(
        stonetown_command("serve", "--port", "0", "--datastore", "memory", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        cwd=workdir,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no traceback
    return result.stderr


def test_metrics_on_a_non_loopback_address_need_the_key(tmp_path: Path) -> None:
    refused = _serve_fails(tmp_path, "--metrics-addr", "0.0.0.0:0")
    assert "metrics" in refused and "without --preshared-key" in refused and "--insecure" in refused
    for allowed in (("--insecure",), ("--preshared-key", KEY)):
        proc = ServerProcess(
            tmp_path, "--port", "0", "--datastore", "memory", "--metrics-addr", "0.0.0.0:0", *allowed
        )
        assert proc.stop() == 0


def test_a_bad_tls_certificate_or_key_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    other_cert, other_key = self_signed_certificate(tmp_path, "other-")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    cases = {
        (str(missing), str(key)): (str(missing), "--tls-cert", "cannot read"),
        (str(cert), str(missing)): (str(missing), "--tls-key", "cannot read"),
        (str(garbage), str(key)): (str(garbage), "--tls-cert", "not a PEM certificate"),
        (str(cert), str(garbage)): (str(garbage), "--tls-key", "not a PEM private key"),
        (str(key), str(cert)): (str(key), "--tls-cert", "swapped"),
        (str(cert), str(other_key)): (str(other_key), "--tls-key", "is not the private key"),
    }
    for (cert_file, key_file), expected in cases.items():
        stderr = _serve_fails(tmp_path, "--tls-cert", cert_file, "--tls-key", key_file)
        assert all(part in stderr for part in expected), (cert_file, key_file, stderr)
        assert "bind" not in stderr.lower()
    assert other_cert.exists()
