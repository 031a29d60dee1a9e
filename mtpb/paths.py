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


def tiny_checkpoint() -> Path:
    """The bundled demo CodeGen checkpoint: the default model of the codegen backend and `mtpb serve`."""
    return data_path("checkpoints") / "tiny-codegen"


def in_installed_package(path: Path) -> bool:
    """True for a path inside an installed package (this one's mtpb/data, or any site-packages):
    nothing there is edited in place, and a reinstall would lose it."""
    resolved = Path(path).resolve()
    data = Path(__file__).resolve().parent / "data"
    return resolved == data or data in resolved.parents or \
        any(part in ("site-packages", "dist-packages") for part in resolved.parts)
