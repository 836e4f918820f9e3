"""Regenerate the Python gRPC code of the Stonetown API from proto/.

Usage: ``python scripts/gen_proto.py`` (writes src/stonetown/api/gen/) or
``python scripts/gen_proto.py --out DIR`` (writes DIR, used by the staleness test).

grpc_tools emits absolute imports named after the proto package (``from stonetown.v1 import
core_pb2``); they are rewritten to point inside the ``stonetown.api.gen`` package.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "src" / "stonetown" / "api" / "gen"
GEN_PACKAGE = "stonetown.api.gen"
_IMPORT_RE = re.compile(r"^from stonetown\.v1 import ", re.MULTILINE)
_INIT_TEXT = '"""Generated gRPC code of the Stonetown API (scripts/gen_proto.py). Do not edit."""\n'


def generate(out: Path) -> list[Path]:
    """Generate into `out` (the directory importable as ``stonetown.api.gen``); return files written."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "stonetown" / "v1").glob("*.proto"))
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out / "stonetown" / "v1"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        written: list[Path] = []
        for source in sorted((Path(tmp) / "stonetown" / "v1").iterdir()):
            text = _IMPORT_RE.sub(f"from {GEN_PACKAGE}.stonetown.v1 import ", source.read_text())
            dest = target / source.name
            dest.write_text(text)
            written.append(dest)
    for package_dir in (out, out / "stonetown", target):
        init = package_dir / "__init__.py"
        init.write_text(_INIT_TEXT)
        written.append(init)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    written = generate(args.out)
    print(f"wrote {len(written)} files under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
