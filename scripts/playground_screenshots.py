"""Screenshots of the playground's main views into docs/ (for the README).

Usage: ``python scripts/playground_screenshots.py`` (needs Debian's chromium and playwright).
Starts `stonetown playground schema/docs.yaml`, drives the page like a user, saves PNGs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> None:
    """Take the screenshots."""
    OUT.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "stonetown.cli.main", "playground", "schema/docs.yaml", "--no-browser"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    url = re.search(r"(http://\S+)", server.stdout.readline()).group(1)  # type: ignore[union-attr]
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(url)
            page.wait_for_function("document.getElementById('diagnostics').innerText.includes('schema OK')")
            page.fill("#check-resource", "document:onboarding")
            page.fill("#check-permission", "view")
            page.fill("#check-subject", "user:bob")
            page.click("#check-run")
            page.wait_for_selector("#check-tree li")
            page.screenshot(path=str(OUT / "playground-explain.png"))
            page.click('[data-tab="assertions-pane"]')
            page.click("#run-all")
            page.wait_for_selector("#assertion-results div")
            page.click('[data-tab="schema-graph-pane"]')
            page.click("#schema-graph-draw")
            page.wait_for_selector("#schema-graph svg")
            page.screenshot(path=str(OUT / "playground-assertions-graph.png"))
            page.click('[data-tab="schema-pane"]')
            original = page.input_value("#schema")
            page.fill("#schema", original.replace("relation banned: user", "relation banned: usr"))
            page.wait_for_selector("#diagnostics .error")
            page.click('[data-tab="lint-pane"]')
            page.screenshot(path=str(OUT / "playground-schema-error.png"))
            page.fill("#schema", original)
            page.wait_for_function("document.getElementById('diagnostics').innerText.includes('schema OK')")
            page.click('[data-tab="data-graph-pane"]')
            page.fill("#data-center", "document:onboarding")
            page.click("#data-draw")
            page.wait_for_selector("#data-graph svg circle")
            page.click('[data-tab="relationships-pane"]')
            wrong = "\ndocument:press#owner@team:eng#member"  # owners are users, not teams
            page.fill("#relationships", page.input_value("#relationships") + wrong)
            page.click("#rel-grid-view")
            page.wait_for_selector("#rel-grid tr.bad")
            page.screenshot(path=str(OUT / "playground-grid-data.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    for path in sorted(OUT.glob("playground-*.png")):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
