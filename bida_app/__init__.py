"""bida: zero-shot super-resolution of thick-slice rodent T2w MRI (Biplanar DDNM Averaging)."""

from __future__ import annotations

from pathlib import Path


def _read_version() -> str:
    """Return the package version: the root ``version`` file in a checkout, else metadata."""
    root_file = Path(__file__).resolve().parent.parent / "version"
    if root_file.is_file():
        return root_file.read_text().strip()
    try:
        from importlib.metadata import version

        return version("bida")
    except Exception:  # pragma: no cover - not installed and no checkout
        return "0+unknown"


__version__ = _read_version()
__all__ = ["__version__"]
