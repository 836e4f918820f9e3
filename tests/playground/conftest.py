"""Fixtures: a real `stonetown playground` process and a real headless Chromium (Debian's
`chromium`, driven by Playwright); the browser tests skip when either is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Playground:
    """A `stonetown playground FILE --no-browser --port 0` subprocess and its URL."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.log_path = workdir / f"playground-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STONETOWN_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stonetown.cli.main", "playground", *args, "--no-browser", "--port", "0"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        self.url = ""
        while time.monotonic() < deadline and not self.url:
            found = re.search(r"playground: (http://\S+)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
            elif self.process.poll() is not None:
                raise RuntimeError(self.log_path.read_text())
            else:
                time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError("the playground did not start: " + self.log_path.read_text())

    def stop(self) -> None:
        """Interrupt and wait."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def playground_factory(tmp_path: Path) -> Iterator[object]:
    """Start playgrounds (stopped at the end of the test)."""
    started: list[Playground] = []

    def start(*args: str) -> Playground:
        started.append(Playground(tmp_path, *args))
        return started[-1]

    yield start
    for item in started:
        item.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium (skips when Chromium or Playwright is missing). Module-scoped: the
    sync Playwright driver runs an event loop in this thread while it lives, which async
    tests elsewhere would trip over."""
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh page whose console errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], errors
