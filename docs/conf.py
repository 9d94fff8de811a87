"""Sphinx configuration of the bida documentation (MyST Markdown pages, numpydoc API)."""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "bida"
author = "bida developers"
copyright = "bida developers, Apache-2.0"  # noqa: A001 - Sphinx's name
release = version = (ROOT / "version").read_text().strip()

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"bida {release}"
# numpydoc: document what the docstrings say; no autosummary tables of class members
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"
autodoc_mock_imports: list[str] = []
nitpicky = False

#: Marker in api.md replaced by one ``automodule`` block per module of a package, so new
#: modules (a new method) are documented without editing the page.
AUTO_MARKER = "<!-- automodules: "


def _expand_automodules(app, docname: str, source: list[str]) -> None:
    """Replace ``<!-- automodules: package -->`` lines with that package's modules."""
    out = []
    for line in source[0].splitlines():
        if line.startswith(AUTO_MARKER):
            package = line[len(AUTO_MARKER) :].split("-->")[0].strip()
            path = ROOT / Path(*package.split("."))
            for info in sorted(pkgutil.iter_modules([str(path)]), key=lambda m: m.name):
                if info.name.startswith("_"):
                    continue
                name = f"{package}.{info.name}"
                out += [f"### `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", "```", ""]
        else:
            out.append(line)
    source[0] = "\n".join(out) + "\n"


def setup(app) -> None:
    app.connect("source-read", _expand_automodules)
