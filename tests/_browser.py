"""Headless Chromium (Debian's package) driven by Playwright, for the browser checks; no browser is downloaded.

Without Chromium (or Playwright) a browser check is skipped with the reason; with CNNLENS_REQUIRE_BROWSER=1 (set by
CI) it fails instead, so that a browser check can never be skipped silently where it must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def chromium() -> str | None:
    for name in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if name and os.access(name, os.X_OK):
            return name
    return None


def browser_or_skip() -> tuple[str, Any]:
    """(Chromium's path, Playwright's ``sync_playwright``), or skip (fail under CNNLENS_REQUIRE_BROWSER=1)."""
    reason = None
    path = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright is not installed (pip install playwright; it is in the dev extras)"
    else:
        if path is None:
            reason = "no Chromium found (Debian: apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("CNNLENS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser checks are required here (CNNLENS_REQUIRE_BROWSER=1) but cannot run: {reason}")
        pytest.skip(reason)
    return str(path), sync_playwright


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium, closed on leaving (its start times out after 60 s instead of hanging)."""
    path, sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=path, args=ARGS, timeout=60_000)
        try:
            yield chrome
        finally:
            chrome.close()
