"""The committed generated code matches what scripts/gen_proto.py makes from proto/ now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "src" / "stonetown" / "api" / "gen"
# Lines naming the generator's own version: they change with grpcio-tools, not with proto/.
_VERSION_LINE = re.compile(
    r"^(# Protobuf Python Version:.*|GRPC_GENERATED_VERSION = .*|\s+\d+,\s*$)$", re.MULTILINE
)


def _normalized(path: Path) -> str:
    return _VERSION_LINE.sub("<version>", path.read_text())


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)], check=True
    )
    fresh = {p.relative_to(tmp_path): p for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(COMMITTED): p
        for p in COMMITTED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(committed), "run: python scripts/gen_proto.py"
    stale = [str(name) for name in fresh if _normalized(fresh[name]) != _normalized(committed[name])]
    assert stale == [], f"stale generated files {stale}; run: python scripts/gen_proto.py"


def test_generated_modules_import_inside_the_package() -> None:
    from stonetown.api.gen.stonetown.v1 import permission_service_pb2, relationship_service_pb2_grpc

    assert permission_service_pb2.DESCRIPTOR.package == "stonetown.v1"
    assert hasattr(relationship_service_pb2_grpc, "RelationshipServiceStub")
