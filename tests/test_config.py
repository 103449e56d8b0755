"""The server settings a classroom depends on."""

import tomllib
from pathlib import Path

CONFIG = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())


def test_xsrf_protection_stays_on_and_uploads_are_capped():
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert 0 < CONFIG["server"]["maxUploadSize"] <= 10


def test_no_telemetry():
    assert CONFIG["browser"]["gatherUsageStats"] is False


def test_the_settings_that_keep_training_and_answers_fast():
    assert CONFIG["runner"]["postScriptGC"] is False  # a full GC after each fragment rerun starved training
    assert CONFIG["server"]["fileWatcherType"] == "none"  # walking torch's modules per session took seconds
