"""Where the bundled data lives: the source checkout, or `mtpb/data` in an installed package."""
from __future__ import annotations

from pathlib import Path


def data_path(name: str) -> Path:
    """problems/, sandbox/, reports/ or checkpoints/ of the running installation."""
    package = Path(__file__).resolve().parent
    installed = package / "data" / name
    if installed.exists():
        return installed
    return package.parent / name
