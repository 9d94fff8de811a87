"""Build-time check: every file under the source ``bida_app/data`` is in the installed package.

Run inside the image build (``python check_package_data.py /tmp/src/bida_app``) so an image
without its default model weights fails to build instead of failing at run time.
"""

from __future__ import annotations

import sys
from pathlib import Path


def missing_package_data(src_pkg: Path, installed_pkg: Path) -> list[str]:
    """Relative paths of files in ``src_pkg/data`` that are absent from ``installed_pkg/data``."""
    src = src_pkg / "data"
    if not src.is_dir():
        return []
    dst = installed_pkg / "data"
    return sorted(
        str(p.relative_to(src))
        for p in src.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and not (dst / p.relative_to(src)).is_file()
    )


def main(argv: list[str]) -> int:
    """Compare the source package with the installed one; exit 1 if data files are missing."""
    import bida_app

    installed = Path(bida_app.__file__).resolve().parent
    missing = missing_package_data(Path(argv[0]), installed)
    if missing:
        sys.stderr.write(f"package data missing from the image: {', '.join(missing)}\n")
        return 1
    n = sum(1 for p in (installed / "data").rglob("*") if p.is_file())
    sys.stdout.write(f"bida {bida_app.__version__} installed in {installed}; {n} data files\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
