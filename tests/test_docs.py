"""The documentation site: builds with warnings as errors and holds every README section."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bida_app.cli.main import main
from bida_app.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The ``##`` sections of the README before it became a short front page (0.2.0): each must
#: stay a section of some documentation page.
README_SECTIONS = (
    "Quick start",
    "Usage",
    "Outputs",
    "Simulating thick-slice data: `bida simulate`",
    "Evaluation",
    "Training the priors",
    "Speed",
    "Scaling out on a cluster",
    "Containers",
    "Development",
    "Data and licences",
)
#: Sections of the short README that only point at the documentation.
FRONT_PAGE_ONLY = ("Documentation",)
REQUIRED_PAGES = ("failure-modes", "speed", "installation", "usage", "outputs", "reports", "api")


def _sphinx(src: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
         str(out / ".doctrees"), str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )  # fmt: skip


def _require(*modules: str) -> None:
    """Fail (not skip) when a documentation tool of the test extras is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: pip install -e '.[test]'")


def _headings(text: str) -> set[str]:
    """Markdown headings of a page (any level), code blocks skipped."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {m.strip() for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _doc_pages() -> dict[str, str]:
    return {p.stem: p.read_text() for p in DOCS.glob("*.md")}


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    _require("sphinx", "myst_parser", "numpydoc")
    out = tmp_path_factory.mktemp("html")
    res = _sphinx(DOCS, out)
    assert res.returncode == 0, f"sphinx-build -W failed:\n{res.stderr[-5000:]}"
    return out


def test_docs_build_with_warnings_as_errors(html: Path):
    for page in REQUIRED_PAGES:
        assert (html / f"{page}.html").is_file(), page
    index = (html / "index.html").read_text()
    for page in REQUIRED_PAGES:
        assert f'href="{page}.html"' in index, f"{page} is not in the toctree"
    assert not list(DOCS.glob("_build")), "the build must not write into docs/"


def test_api_reference_documents_the_library(html: Path):
    api = (html / "api.html").read_text()
    for name in (
        "bida_app.physics.operator.SliceOperator",
        "bida_app.diffusion.bida.super_resolve",
        "bida_app.methods.cubic.cubic_super_resolve",
        "bida_app.reports.boilerplate.methods_text",
    ):
        assert f'id="{name}"' in api, name
    for module in (ROOT / "bida_app" / "methods").glob("[!_]*.py"):
        assert f'id="module-bida_app.methods.{module.stem}"' in api, module.name


def test_images_of_the_pages_are_copied(html: Path):
    for page, name in (("reports", "report_methods.png"), ("model-card", "training_curves.png")):
        assert name in (html / f"{page}.html").read_text()
        assert (html / "_images" / name).is_file()


def test_a_broken_page_fails_the_build(tmp_path: Path):
    """The build really treats warnings as errors (here a missing image)."""
    _require("sphinx", "myst_parser")
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text("extensions = ['myst_parser']\n")
    (src / "index.md").write_text("# Title\n\n![x](missing.png)\n")
    res = _sphinx(src, tmp_path / "out")
    assert res.returncode != 0 and "missing.png" in res.stderr


def test_every_readme_section_is_a_docs_section():
    current = re.findall(r"^## (.+)$", (ROOT / "README.md").read_text(), re.M)
    headings = set().union(*(_headings(t) for t in _doc_pages().values()))
    wanted = [h for h in dict.fromkeys([*README_SECTIONS, *current]) if h not in FRONT_PAGE_ONLY]
    missing = [h for h in wanted if h not in headings]
    assert not missing, f"README sections with no docs page section: {missing}"


def test_every_participant_option_is_documented():
    usage = _doc_pages()["usage"]
    undocumented = [
        action.option_strings
        for action in build_parser()._actions
        if action.option_strings and not any(o in usage for o in action.option_strings)
    ]
    assert not undocumented, f"options missing from docs/usage.md: {undocumented}"
    for method in ("dccubic", "cubic", "bida"):
        assert f"`{method}`" in usage or f"--method {method}" in usage


def test_installation_covers_pip_docker_and_apptainer():
    text = _doc_pages()["installation"]
    for needle in ("scripts/setup.sh", "pip install dist/bida-", "docker run", "apptainer"):
        assert needle in text, needle


@pytest.mark.slow
def test_every_sidecar_key_of_a_run_is_documented(tmp_path: Path):
    bids, out = tmp_path / "bids", tmp_path / "out"
    assert main(["demo-data", str(bids), "--small"]) == 0
    assert main([str(bids), str(out), "participant", "--participant_label", "01"]) == 0
    sidecars = sorted(out.glob("sub-01/anat/*_desc-*_T2w.json"))
    assert len(sidecars) >= 2, sidecars  # the result and its companions
    outputs = _doc_pages()["outputs"]
    keys = dict.fromkeys(k for p in sidecars for k in json.loads(p.read_text()))
    missing = [key for key in keys if f"`{key}`" not in outputs]
    assert not missing, f"sidecar keys not explained in docs/outputs.md: {missing}"
    logs = sorted(p.name for p in (out / "logs").iterdir() if p.is_file())
    for name in logs:
        assert name in outputs, f"logs/{name} is not in the output tree of docs/outputs.md"


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.stem not in ("index", "changelog", "model-card"):
            assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    assert len(readme.splitlines()) < 120, "the README is a short front page"
