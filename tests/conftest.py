"""Shared fixtures. Tests that need MNIST use the real data set and fail, never skip, without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# The project's machines keep an offline mirror beside the checkout; use it unless told otherwise.
if not os.environ.get("DIGITLAB_MIRROR") and SHARED_DATA.is_dir():
    os.environ["DIGITLAB_MIRROR"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def runs_folder(tmp_path, monkeypatch) -> Path:
    """Runs that tests save land in a temporary folder, never in the developer's own."""
    monkeypatch.setenv("DIGITLAB_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(autouse=True)
def classset_folder(tmp_path, monkeypatch) -> Path:
    """Drawings that tests add land in a temporary class set, never in the developer's own."""
    monkeypatch.setenv("DIGITLAB_CLASSSET", str(tmp_path / "classset"))
    return tmp_path / "classset"


@pytest.fixture(scope="session")
def mnist():
    from core.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def mirror_root() -> Path:
    root = os.environ.get("DIGITLAB_MIRROR")
    assert root and Path(root, "mnist").is_dir(), (
        "these tests need the MNIST files: set DIGITLAB_MIRROR to a folder with mnist/ and fashion-mnist/"
    )
    return Path(root)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (its own cookies and session) with one page, downloads allowed."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """A fresh DIGITLAB_HOME: nothing cached, nothing saved."""
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
