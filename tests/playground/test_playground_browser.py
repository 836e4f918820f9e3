"""The playground page driven in a real headless Chromium against a real `stonetown playground`.

Each test does what a schema author does: type a schema with an error and see it at its line;
add relationships (grid and pasted text); run the assertions; regenerate expected relations;
explain a grant and a denial; load a file and save it byte for byte; connect to a running
`stonetown serve`; and type bad input without breaking the page or the server behind it.
"""

from __future__ import annotations

from pathlib import Path

from stonetown import Client

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "schema" / "docs.yaml"

SMALL = """\
schema: |-
  definition user {}
  definition doc {
    relation viewer: user
    relation banned: user
    permission view = viewer - banned
  }
relationships: |-
  doc:readme#viewer@user:ana
assertions:
  assertTrue:
    - doc:readme#view@user:ana
  assertFalse:
    - doc:readme#view@user:bob
"""


def _wait_text(page: object, selector: str, text: str) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "([s, t]) => document.querySelector(s) && document.querySelector(s).innerText.includes(t)",
        arg=[selector, text],
        timeout=15_000,
    )


def test_a_schema_error_is_shown_at_its_line_as_it_is_typed(playground_factory, page) -> None:
    pg = playground_factory()
    page.goto(pg.url)
    page.fill("#schema", "definition user {}\n\ndefinition doc {\n  relation viewer: usr\n}\n")
    _wait_text(page, "#diagnostics", "4:20")
    assert "`usr` not found" in page.inner_text("#diagnostics")
    assert "error" in page.get_attribute('[data-for="schema"] .gutter span[data-line="4"]', "class")
    # fix it keystroke by keystroke: the diagnostic goes away
    page.fill("#schema", "definition user {}\n\ndefinition doc {\n  relation viewer: us\n}\n")
    page.focus("#schema")
    page.evaluate("(a => a.setSelectionRange(a.value.indexOf(': us') + 4, a.value.indexOf(': us') + 4))"
                  "(document.getElementById('schema'))")
    page.keyboard.type("er")
    _wait_text(page, "#diagnostics", "schema OK")
    # lint speaks up for what is legal but wrong
    never = "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission never = nil\n}\n"
    page.fill("#schema", never)
    page.click('[data-tab="lint-pane"]')
    _wait_text(page, "#lint", "can never be granted")


def test_relationships_grid_and_pasted_text_are_validated_per_row(
    tmp_path: Path, playground_factory, page
) -> None:
    file = tmp_path / "small.yaml"
    file.write_text(SMALL)
    pg = playground_factory(str(file))
    page.goto(pg.url)
    _wait_text(page, "#diagnostics", "schema OK")
    page.click('[data-tab="relationships-pane"]')
    # paste many at once, one of them wrong
    pasted = "doc:readme#viewer@user:ana\ndoc:readme#banned@user:cat\ndoc:readme#nosuch@user:dan\n"
    page.fill("#relationships", pasted)
    _wait_text(page, "#rel-problems", "nosuch")
    assert "3:" in page.inner_text("#rel-problems")
    assert "error" in page.get_attribute('[data-for="relationships"] .gutter span[data-line="3"]', "class")
    # the grid edits the same text
    page.click("#rel-grid-view")
    page.wait_for_selector('#rel-grid tr[data-line="3"]')
    cell = page.locator('#rel-grid tr[data-line="3"] input[data-field="relation"]')
    cell.fill("viewer")
    cell.dispatch_event("change")
    _wait_text(page, "#rel-summary", "0 with problems")
    assert "doc:readme#viewer@user:dan" in page.input_value("#relationships")
    page.click("#rel-add-row")
    _wait_text(page, "#rel-summary", "1 with problems")


def test_run_all_marks_each_assertion_and_regenerates_expected_relations(
    tmp_path: Path, playground_factory, page
) -> None:
    file = tmp_path / "small.yaml"
    file.write_text(SMALL + "    - doc:readme#view@user:ana\n")  # a wrong assertFalse on line 14
    pg = playground_factory(str(file))
    page.goto(pg.url)
    _wait_text(page, "#diagnostics", "schema OK")
    page.click('[data-tab="assertions-pane"]')
    page.click("#run-all")
    _wait_text(page, "#assertion-results", "expected DENIED, got ALLOWED")
    results = page.inner_text("#assertion-results")
    assert "✓ assertTrue doc:readme#view@user:ana" in results
    assert "✓ assertFalse doc:readme#view@user:bob" in results
    assert "pass" in page.get_attribute('[data-for="assertions"] .gutter span[data-line="2"]', "class")
    assert "fail" in page.get_attribute('[data-for="assertions"] .gutter span[data-line="5"]', "class")
    page.click('[data-tab="validation-pane"]')
    page.click("#regenerate")
    page.wait_for_function("document.getElementById('validation').value.includes('[user:ana]')")
    assert "doc:readme#view:\n- '[user:ana] is <doc:readme#viewer>'" in page.input_value("#validation")
    page.click("#run-all-2")
    _wait_text(page, "#validation-results", "✓ doc:readme#view")


def test_check_explains_a_grant_and_a_denial(playground_factory, page) -> None:
    pg = playground_factory(str(DOCS))
    page.goto(pg.url)
    _wait_text(page, "#diagnostics", "schema OK")
    page.fill("#check-resource", "document:onboarding")
    page.fill("#check-permission", "view")
    page.fill("#check-subject", "user:ana")
    page.click("#check-run")
    _wait_text(page, "#check-result", "ALLOWED")
    path = page.inner_text("#check-path")
    assert "folder:handbook#viewer@team:eng#member" in path and "team:eng#member@user:ana" in path
    page.fill("#check-subject", "user:bob")
    page.click("#check-run")
    _wait_text(page, "#check-result", "DENIED")
    assert "excluded: document:onboarding#banned holds" in page.inner_text("#check-tree")
    assert page.inner_text("#check-path") == ""
    # a node's schema position jumps to the line in the editor
    page.click("#check-tree .where >> nth=0")
    assert page.evaluate("document.activeElement.id") == "schema"


def _inline_docs(tmp_path: Path) -> Path:
    """schema/docs.yaml with its schemaFile written inline (an uploaded file has no folder)."""
    schema = (ROOT / "schema" / "docs.zed").read_text()
    inline = "schema: |\n" + "".join(f"  {line}\n" if line else "\n" for line in schema.splitlines())
    path = tmp_path / "docs-inline.yaml"
    path.write_text(DOCS.read_text().replace("schemaFile: docs.zed\n", inline))
    return path


def test_load_and_save_round_trip_byte_for_byte(playground_factory, page, tmp_path: Path) -> None:
    original = _inline_docs(tmp_path)
    pg = playground_factory()
    page.goto(pg.url)
    page.set_input_files("#load-input", str(original))
    _wait_text(page, "#doc-name", "docs-inline.yaml")
    with page.expect_download() as download:
        page.click("#save")
    saved = tmp_path / "saved.yaml"
    download.value.save_as(saved)
    assert saved.read_bytes() == original.read_bytes()
    # an edited document saves in the canonical layout and loads back to the same sections
    page.click('[data-tab="relationships-pane"]')
    page.fill("#relationships", page.input_value("#relationships") + "\ndocument:press#banned@user:eve")
    with page.expect_download() as download:
        page.click("#save")
    download.value.save_as(saved)
    text = saved.read_text()
    assert "document:press#banned@user:eve" in text and text != original.read_text()
    page.set_input_files("#load-input", str(saved))
    _wait_text(page, "#diagnostics", "schema OK")
    assert page.input_value("#relationships").endswith("document:press#banned@user:eve")


def test_connect_to_a_running_server_reads_and_checks_it(playground_factory, page, tmp_path: Path) -> None:
    from grpc_harness import SCHEMA, ServerProcess

    (tmp_path / "schema.zed").write_text(SCHEMA)
    server = ServerProcess(
        tmp_path, "--port", "0", "--datastore", str(tmp_path / "st.db"), "--schema", "schema.zed",
        "--preshared-key", "k",
    )  # fmt: skip
    try:
        with Client(server.address, preshared_key="k") as client:
            client.write(touch=["team:eng#member@user:ana", "document:plan#editor@team:eng#member"])
        pg = playground_factory()
        page.goto(pg.url)
        page.fill("#connect-endpoint", server.address)
        page.fill("#connect-key", "k")
        page.click("#connect")
        _wait_text(page, "#status", "connected")
        assert "document:plan#editor@team:eng#member" in page.input_value("#relationships")
        assert "definition document" in page.input_value("#schema")
        assert not page.is_visible("#push")  # read-only unless started with --allow-writes
        page.fill("#check-resource", "document:plan")
        page.fill("#check-permission", "view")
        page.fill("#check-subject", "user:ana")
        page.click("#check-run")
        _wait_text(page, "#check-result", "ALLOWED")
        assert "team:eng#member@user:ana" in page.inner_text("#check-path")
    finally:
        server.stop()


def test_bad_input_gets_a_message_and_the_page_keeps_working(playground_factory, page) -> None:
    pg = playground_factory(str(DOCS))
    page.goto(pg.url)
    _wait_text(page, "#diagnostics", "schema OK")
    page.click('[data-tab="assertions-pane"]')
    page.fill("#assertions", "assertTrue: [unclosed")
    page.click("#run-all")
    _wait_text(page, "#assertion-results", "not valid YAML")
    assert "Traceback" not in page.inner_text("body")
    page.fill("#check-resource", "nota resource")
    page.fill("#check-permission", "view")
    page.fill("#check-subject", "user:ana")
    page.click("#check-run")
    _wait_text(page, "#check-result", "error")
    page.click('[data-tab="schema-pane"]')
    page.fill("#schema", "definition " + "{" * 5000)
    _wait_text(page, "#diagnostics", "1:")
    assert pg.process.poll() is None  # the server behind the page is still there


def test_pictures_and_lookups_are_drawn_from_the_engine(playground_factory, page) -> None:
    pg = playground_factory(str(DOCS))
    page.goto(pg.url)
    _wait_text(page, "#diagnostics", "schema OK")
    page.click('[data-tab="schema-graph-pane"]')
    page.click("#schema-graph-draw")
    page.wait_for_selector("#schema-graph svg path")
    assert int(page.get_attribute("#schema-graph svg", "data-edges")) > 5
    # which permissions a relation feeds
    assert "feeds: document#view" in page.text_content('#schema-graph text[data-row="document#viewer"] title')
    page.click('[data-tab="data-graph-pane"]')
    page.fill("#data-center", "document:onboarding")
    page.click("#data-draw")
    page.wait_for_selector("#data-graph svg circle")
    assert int(page.get_attribute("#data-graph svg", "data-nodes")) >= 4
    page.click('[data-tab="lookup-pane"]')
    page.fill("#ls-resource", "document:onboarding")
    page.fill("#ls-permission", "view")
    page.fill("#ls-type", "user")
    page.click("#ls-run")
    _wait_text(page, "#ls-results", "user:ana")
    assert "user:bob" not in page.inner_text("#ls-results")
    page.select_option("#examples", "collaboration.yaml")
    _wait_text(page, "#doc-name", "collaboration.yaml")
