"""Where Digit Lab keeps its files: one folder, ``DIGITLAB_HOME`` (default ``.digitlab/`` in the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = Path(__file__).resolve().parent / "assets" / "default-cnn.pt"


def home() -> Path:
    """The writable folder for the data cache, runs and exports."""
    return Path(os.environ.get("DIGITLAB_HOME") or PROJECT_ROOT / ".digitlab").expanduser()
