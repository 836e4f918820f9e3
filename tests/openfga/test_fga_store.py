"""The OpenFGA-semantics store and `.fga.yaml` store test files (`stonetown validate`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stonetown.fgatest.store import FgaRequestError, FgaStore, FgaTuple
from stonetown.fgatest.storefile import StoreFileError, run_store_file
from stonetown.validation.runner import validate_files

MODEL_V1 = """
model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type doc
  relations
    define parent: [group]
    define editor: [user]
    define viewer: [user, user:*]
"""

MODEL_V2 = """
model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type doc
  relations
    define parent: [group]
    define blocked: [user]
    define viewer: [user, group#member] or (member from parent but not blocked)
"""


def _store() -> FgaStore:
    store = FgaStore()
    store.write_model(MODEL_V1)
    store.write_tuples(
        [
            {"object": "doc:1", "relation": "viewer", "user": "user:anne"},
            {"object": "doc:2", "relation": "viewer", "user": "user:*"},
            {"object": "doc:1", "relation": "editor", "user": "user:bob"},
            {"object": "group:g", "relation": "member", "user": "user:carl"},
            {"object": "doc:3", "relation": "parent", "user": "group:g"},
        ]
    )
    return store


def test_queries_and_wildcards() -> None:
    """Check, ListObjects and ListUsers over one model, wildcards reported as `user:*`."""
    store = _store()
    assert store.check("doc:1", "viewer", "user:anne") is True
    assert store.check("doc:2", "viewer", "user:zed") is True
    assert store.check("doc:1", "viewer", "user:bob") is False
    assert store.list_objects("user:anne", "doc", "viewer") == {"doc:1", "doc:2"}
    assert store.list_users("doc:2", "viewer", ["user"]) == {"user:*"}
    assert store.list_users("doc:1", "viewer", ["user"]) == {"user:anne"}


def test_new_model_remaps_and_ignores_old_tuples() -> None:
    """Tuples keep their visible names across models: `viewer` tuples move under the split
    definition's hidden relation, the wildcard and `editor` tuples are ignored by the new model."""
    store = _store()
    store.write_model(MODEL_V2)
    assert store.check("doc:1", "viewer", "user:anne") is True  # stored as viewer__direct now
    assert store.check("doc:2", "viewer", "user:zed") is False  # user:* no longer admitted
    assert store.check("doc:3", "viewer", "user:carl") is True  # member from parent
    store.write_tuples([FgaTuple("doc:3", "blocked", "user:carl")])
    assert store.check("doc:3", "viewer", "user:carl") is False
    assert store.list_users("doc:3", "viewer", ["user"]) == set()
    with pytest.raises(FgaRequestError) as caught:
        store.check("doc:1", "editor", "user:bob")
    assert caught.value.code == 2000
    store.write_model(MODEL_V1)
    assert store.check("doc:1", "editor", "user:bob") is True  # still stored


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda s: s.check("doc:1", "nope", "user:anne"), 2000),
        (lambda s: s.check("doc:1", "viewer", "ghost:anne"), 2000),
        (lambda s: s.check("doc:1", "viewer", "a:b:c"), 2000),
        (lambda s: s.list_objects("user:anne", "ghost", "viewer"), 2021),
        (lambda s: s.list_objects("user:anne", "doc", "nope"), 2022),
        (lambda s: s.list_users("doc:1", "viewer", ["ghost"]), 2021),
        (lambda s: s.list_users("doc:1", "viewer", ["group#nope"]), 2022),
        (lambda s: s.check("doc:1", "viewer", "user:anne", [FgaTuple("doc:1", "parent", "user:x")]), 2027),
        (lambda s: s.check("doc:1", "viewer", "user:a", [FgaTuple("doc:1", "viewer", "doc:1#viewer")]), 2027),
    ],
)
def test_error_codes(call: object, code: int) -> None:
    """Requests OpenFGA refuses fail with its error codes."""
    with pytest.raises(FgaRequestError) as caught:
        call(_store())  # type: ignore[operator]
    assert caught.value.code == code


def test_contextual_tuples_do_not_persist() -> None:
    """Contextual tuples count for one request only."""
    store = _store()
    extra = [FgaTuple("doc:9", "editor", "user:anne")]
    assert store.check("doc:9", "editor", "user:anne", extra) is True
    assert store.list_objects("user:anne", "doc", "editor", extra) == {"doc:9"}
    assert store.check("doc:9", "editor", "user:anne") is False


STORE_FILE = """
name: sample
model_file: ./model.fga
tuple_file: ./tuples.yaml
tuples:
  - user: user:anne
    relation: member
    object: group:eng
tests:
  - name: membership
    tuples:
      - user: group:eng#member
        relation: viewer
        object: doc:2
    check:
      - users: [user:bob]
        object: doc:2
        assertions:
          viewer: {bob_expected}
      - user: user:anne
        objects: [doc:1, doc:2]
        assertions:
          viewer: true
    list_objects:
      - user: user:anne
        type: doc
        assertions:
          viewer: [doc:1, doc:2]
    list_users:
      - object: doc:2
        user_filter:
          - type: group
            relation: member
        assertions:
          viewer:
            users: [group:eng#member]
"""

MODEL_FILE = """model
  schema 1.1
type user
type group
  relations
    define member: [user]
type doc
  relations
    define viewer: [user, group#member]
"""


def _write(tmp_path: Path, bob_expected: str, extra_bob: bool) -> Path:
    (tmp_path / "model.fga").write_text(MODEL_FILE)
    tuples = "- user: user:anne\n  relation: viewer\n  object: doc:1\n"
    if extra_bob:
        tuples += "- user: user:bob\n  relation: member\n  object: group:eng\n"
    (tmp_path / "tuples.yaml").write_text(tuples)
    path = tmp_path / "store.fga.yaml"
    path.write_text(STORE_FILE.replace("{bob_expected}", bob_expected))
    return path


def test_store_file_passes_and_fails(tmp_path: Path) -> None:
    """A store file's assertions are all run; a wrong expectation is reported with its request."""
    good = _write(tmp_path, "true", extra_bob=True)
    report = run_store_file(good)
    assert (report.assertions, report.failures) == (5, [])
    bad = _write(tmp_path, "true", extra_bob=False)
    report = run_store_file(bad)
    assert report.assertions == 5
    assert len(report.failures) == 1 and "check doc:2#viewer@user:bob" in report.failures[0]


def test_validate_command_dispatches_store_files(tmp_path: Path) -> None:
    """`stonetown validate` runs `.fga.yaml` files with OpenFGA semantics."""
    out = io.StringIO()
    assert validate_files([str(_write(tmp_path, "false", extra_bob=False))], out) == 0
    assert "5 assertion(s)" in out.getvalue()
    out = io.StringIO()
    assert validate_files([str(_write(tmp_path, "true", extra_bob=False))], out) == 1
    (tmp_path / "broken.fga.yaml").write_text("tests: [\n")
    out = io.StringIO()
    assert validate_files([str(tmp_path / "broken.fga.yaml")], out) == 2


def test_malformed_store_file(tmp_path: Path) -> None:
    """A file without a model is refused as malformed."""
    path = tmp_path / "x.fga.yaml"
    path.write_text("tests: []\n")
    with pytest.raises(StoreFileError):
        run_store_file(path)


MODULAR_STORE = """
model_file: ./fga.mod
tuples:
  - user: user:anne
    relation: owner
    object: doc:1
  - user: user:bob
    relation: viewer
    object: doc:2
tests:
  - name: modular
    check:
      - user: user:anne
        object: doc:1
        assertions:
          viewer: true
          owner: true
      - user: user:bob
        object: doc:1
        assertions:
          viewer: {bob_expected}
    list_objects:
      - user: user:anne
        type: doc
        assertions:
          viewer: [doc:1]
"""


def _write_modular(tmp_path: Path, bob_expected: str) -> Path:
    (tmp_path / "team").mkdir(exist_ok=True)
    (tmp_path / "fga.mod").write_text("schema: '1.2'\ncontents:\n  - core.fga\n  - team/doc.fga\n")
    (tmp_path / "core.fga").write_text(
        "module core\n\ntype user\n\ntype doc\n  relations\n    define owner: [user]\n"
    )
    (tmp_path / "team" / "doc.fga").write_text(
        "module docs\n\nextend type doc\n  relations\n    define viewer: [user] or owner\n"
    )
    path = tmp_path / "store.fga.yaml"
    path.write_text(MODULAR_STORE.format(bob_expected=bob_expected))
    return path


def test_store_file_with_modular_model(tmp_path: Path) -> None:
    """`model_file: fga.mod` combines the module files it lists (as `fga model test` does)."""
    report = run_store_file(_write_modular(tmp_path, "false"))
    assert (report.assertions, report.failures) == (4, [])
    report = run_store_file(_write_modular(tmp_path, "true"))
    assert len(report.failures) == 1 and "doc:1#viewer@user:bob" in report.failures[0]
    out = io.StringIO()
    assert validate_files([str(_write_modular(tmp_path, "false"))], out) == 0
    (tmp_path / "team" / "doc.fga").unlink()
    with pytest.raises(StoreFileError, match="doc.fga"):
        run_store_file(tmp_path / "store.fga.yaml")
