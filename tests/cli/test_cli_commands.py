"""The real `stonetown` CLI in subprocesses against a real server."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from grpc_harness import SCHEMA, stonetown_command

Runner = Callable[..., subprocess.CompletedProcess[str]]


def test_check_exit_codes(stonetown: Runner) -> None:
    assert stonetown("rel", "touch", "document:c1#viewer@user:ana").returncode == 0
    allowed = stonetown("check", "document:c1", "view", "user:ana")
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "allowed")
    denied = stonetown("check", "document:c1", "view", "user:bob")
    assert (denied.returncode, denied.stdout.strip()) == (1, "denied")
    error = stonetown("check", "document:c1", "nosuch", "user:bob")
    assert error.returncode == 2 and "INVALID_ARGUMENT" in error.stderr
    as_json = json.loads(stonetown("check", "--json", "document:c1", "view", "user:ana").stdout)
    assert as_json["allowed"] is True and as_json["token"]


def test_wrong_key_and_unreachable_server_exit_2(stonetown: Runner) -> None:
    wrong = stonetown("schema", "read", env={"STONETOWN_PRESHARED_KEY": "nope"})
    assert wrong.returncode == 2 and "UNAUTHENTICATED" in wrong.stderr
    down = stonetown("schema", "read", "--endpoint", "127.0.0.1:1", "--timeout", "5")
    assert down.returncode == 2 and "UNAVAILABLE" in down.stderr


def test_rel_write_touch_delete_read_and_file(stonetown: Runner, tmp_path: Path) -> None:
    assert (
        stonetown("rel", "write", "document:r1#owner@user:ana", "document:r1#editor@user:bob").returncode == 0
    )
    again = stonetown("rel", "write", "document:r1#owner@user:ana")
    assert again.returncode == 2 and "ALREADY_EXISTS" in again.stderr
    (tmp_path / "rels.txt").write_text(
        "# a comment\ndocument:r2#viewer@user:cat\n\ndocument:r2#viewer@user:dan\n"
    )
    assert stonetown("rel", "touch", "--file", "rels.txt").returncode == 0
    listed = stonetown("rel", "read", "document:r*").stdout.split()
    assert listed == sorted(
        ["document:r1#editor@user:bob", "document:r1#owner@user:ana", "document:r2#viewer@user:cat",
         "document:r2#viewer@user:dan"]
    )  # fmt: skip
    assert stonetown("rel", "delete", "document:r1#editor@user:bob").returncode == 0
    deleted = stonetown("rel", "delete", "--json", "--filter", "document:r2#viewer")
    assert json.loads(deleted.stdout)["deleted"] == 2
    rows = [
        json.loads(line) for line in stonetown("rel", "read", "--json", "document:r*").stdout.splitlines()
    ]
    assert [row["relationship"] for row in rows] == ["document:r1#owner@user:ana"]


def test_schema_read_write_and_fmt(stonetown: Runner, tmp_path: Path) -> None:
    assert stonetown("schema", "read").stdout.strip() == SCHEMA.strip()
    (tmp_path / "s.zed").write_text(SCHEMA)
    assert stonetown("schema", "write", "s.zed").returncode == 0
    (tmp_path / "ugly.zed").write_text("definition   user {}\ndefinition doc { relation viewer:user }\n")
    formatted = stonetown("schema", "fmt", "ugly.zed")
    assert formatted.returncode == 0 and "relation viewer: user" in formatted.stdout
    bad = stonetown("schema", "fmt", "-", stdin="definition {")
    assert bad.returncode == 2


FGA_MODEL = """model
  schema 1.1

type user

type group
  relations
    define member: [user, group#member]

type doc
  relations
    define owner: [user]
    define viewer: [user, user:*, group#member] or owner
    define blocked: [user]
    define view: viewer but not blocked
"""


def test_schema_import_fga_and_export_fga(stonetown: Runner, tmp_path: Path) -> None:
    (tmp_path / "model.fga").write_text(FGA_MODEL)
    imported = stonetown("schema", "import-fga", "model.fga")
    assert imported.returncode == 0, imported.stderr
    assert "permission view = viewer - blocked" in imported.stdout
    # the imported schema is a valid Stonetown schema and exports back to the same model
    (tmp_path / "model.zed").write_text(imported.stdout)
    assert stonetown("schema", "fmt", "model.zed").returncode == 0
    exported = stonetown("schema", "export-fga", "model.zed")
    assert exported.returncode == 0, exported.stderr
    assert "define viewer: [user, user:*, group#member] or owner" in exported.stdout
    assert "define view: viewer but not blocked" in exported.stdout
    # without a file: the schema in force on the server
    (tmp_path / "server.zed").write_text(stonetown("schema", "read").stdout)
    from_server, from_file = (
        stonetown("schema", "export-fga"),
        stonetown("schema", "export-fga", "server.zed"),
    )
    assert (from_server.returncode, from_server.stdout, from_server.stderr) == (
        from_file.returncode,
        from_file.stdout,
        from_file.stderr,
    )
    # this test server's schema uses expiration, which OpenFGA cannot express: a clear error
    assert from_server.returncode == 2 and "`with expiration` has no OpenFGA equivalent" in from_server.stderr
    # a modular model through its fga.mod
    (tmp_path / "fga.mod").write_text("schema: '1.2'\ncontents:\n  - core.fga\n  - docs.fga\n")
    (tmp_path / "core.fga").write_text(
        "module core\n\ntype user\n\ntype org\n  relations\n    define member: [user]\n"
    )
    (tmp_path / "docs.fga").write_text(
        "module docs\n\ntype doc\n  relations\n    define org: [org]\n    define view: member from org\n"
    )
    modular = stonetown("schema", "import-fga", "fga.mod")
    assert modular.returncode == 0, modular.stderr
    assert "permission view = org->member" in modular.stdout
    # models OpenFGA refuses: exit 2, the error with its line:column
    refused = stonetown(
        "schema",
        "import-fga",
        "-",
        stdin="model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: b\n    define b: a\n",
    )
    assert refused.returncode == 2 and "line=6, column=12" in refused.stderr and refused.stdout == ""


def test_expand_and_lookups(stonetown: Runner) -> None:
    stonetown(
        "rel",
        "touch",
        "document:e1#owner@user:ana",
        "document:e1#editor@team:e#member",
        "team:e#member@user:bob",
    )
    tree = stonetown("expand", "document:e1", "edit", "--recursive").stdout
    assert tree.splitlines()[0] == "document:e1#edit (union)"
    assert "  - user:ana" in tree and "- user:bob" in tree
    assert stonetown("lookup-resources", "document", "edit", "user:bob").stdout.split() == ["document:e1"]
    subjects = stonetown("lookup-subjects", "document:e1", "edit", "user").stdout.split()
    assert subjects == ["user:ana", "user:bob"]


def test_import_export_round_trip_with_progress(stonetown: Runner, tmp_path: Path) -> None:
    lines = [f"folder:imp{n}#viewer@user:u{n}" for n in range(1234)]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    imported = stonetown("import", "in.txt", "--batch-size", "200")
    assert imported.returncode == 0, imported.stderr
    assert "imported [" in imported.stderr and "1234/1234" in imported.stderr
    exported = stonetown("export", "out.txt", "--filter", "folder:imp*")
    assert exported.returncode == 0 and "exported 1234" in exported.stderr
    assert sorted((tmp_path / "out.txt").read_text().split()) == sorted(lines)


def test_watch_prints_changes(stonetown: Runner, cli_server: object) -> None:
    token = stonetown("rel", "touch", "folder:w0#viewer@user:a").stdout.strip()
    watcher = subprocess.Popen(
        stonetown_command("watch", "--after", token, "--count", "1", "--type", "document", "--json"),
        stdout=subprocess.PIPE,
        text=True,
        env={
            "STONETOWN_ENDPOINT": cli_server.address,
            "STONETOWN_PRESHARED_KEY": "k",
            "PATH": "/usr/bin:/bin",
        },  # type: ignore[attr-defined]
    )
    stonetown("rel", "touch", "document:w1#viewer@user:a")
    out, _ = watcher.communicate(timeout=60)
    event = json.loads(out)
    assert event["changes"] == [{"op": "touch", "relationship": "document:w1#viewer@user:a"}]


def test_validate_runs_the_validation_files(stonetown: Runner, tmp_path: Path) -> None:
    body = "\n".join("  " + line for line in SCHEMA.splitlines())
    (tmp_path / "ok.yaml").write_text(
        f"schema: |-\n{body}\nrelationships: |-\n  document:v#viewer@user:ana\n"
        "assertions:\n  assertTrue:\n    - document:v#view@user:ana\n"
        "  assertFalse:\n    - document:v#view@user:bob\n"
    )
    (tmp_path / "bad.yaml").write_text(
        f"schema: |-\n{body}\nrelationships: |-\n  document:v#viewer@user:ana\n"
        "assertions:\n  assertTrue:\n    - document:v#view@user:bob\n"
    )
    assert stonetown("validate", "ok.yaml").returncode == 0
    assert stonetown("validate", "bad.yaml").returncode != 0


def test_serve_bootstrap_then_sigterm(tmp_path: Path) -> None:
    from grpc_harness import ServerProcess

    body = "\n".join("  " + line for line in SCHEMA.splitlines())
    (tmp_path / "boot.yaml").write_text(
        f"schema: |-\n{body}\nrelationships: |-\n  document:b#viewer@user:ana\n"
    )
    args = (
        "--port",
        "0",
        "--datastore",
        str(tmp_path / "b.db"),
        "--bootstrap",
        "boot.yaml",
        "--schema",
        "s.zed",
    )
    (tmp_path / "s.zed").write_text(SCHEMA)
    for attempt in range(2):
        proc = ServerProcess(tmp_path, *args)
        check = subprocess.run(
            stonetown_command("check", "document:b", "view", "user:ana"),
            env={"STONETOWN_ENDPOINT": proc.address, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        log = proc.log()
        assert proc.stop() == 0
        assert ("event=bootstrapped" in log) == (attempt == 0)
        assert "schema written" not in log  # same text as the bootstrap's: not rewritten
        time.sleep(0)


def test_bulk_import_is_all_or_nothing(stonetown: Runner, tmp_path: Path) -> None:
    lines = [f"folder:bulk{n}#viewer@user:u{n}" for n in range(1500)]
    (tmp_path / "bad.txt").write_text("\n".join([*lines, "folder:bulkx#nosuch@user:u0"]) + "\n")
    refused = stonetown("import", "bad.txt", "--bulk", "--no-progress")
    assert refused.returncode != 0 and "relationships[1500]" in refused.stderr
    assert stonetown("export", "--filter", "folder:bulk*").stdout == ""
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    imported = stonetown("import", "in.txt", "--bulk", "--batch-size", "400")
    assert imported.returncode == 0, imported.stderr
    assert "1500/1500" in imported.stderr
    exported = stonetown("export", "--filter", "folder:bulk*").stdout.split()
    assert sorted(exported) == sorted(lines)
    again = stonetown("import", "in.txt", "--bulk", "--no-progress")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_validate_lists_only_the_branches_that_grant_a_subject(stonetown: Runner, tmp_path: Path) -> None:
    # sam is stored under group:g#member, but `both` is an intersection sam does not pass
    # (no holder): only the owner relationship grants the view
    text = (
        "schema: |-\n  definition user {}\n  definition group {\n    relation holder: user\n"
        "    relation member: user\n    permission both = holder & member\n  }\n"
        "  definition doc {\n    relation owner: user\n    relation group: group\n"
        "    permission view = owner + group->both\n  }\n"
        "relationships: |-\n  doc:d#owner@user:sam\n  doc:d#group@group:g\n  group:g#member@user:sam\n"
        "validation:\n  doc:d#view:\n    - '[user:sam] is <doc:d#owner>'\n"
    )
    (tmp_path / "inter.yaml").write_text(text)
    result = stonetown("validate", "inter.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "both.yaml").write_text(text.replace("doc:d#owner@user:sam", "group:g#holder@user:sam"))
    both = stonetown("validate", "both.yaml")
    assert both.returncode == 1 and "<group:g#holder>/<group:g#member>" in both.stdout + both.stderr
