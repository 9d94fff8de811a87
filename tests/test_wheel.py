"""``python -m build`` makes a wheel that works on its own, shipped priors included.

The wheel is built from a copy of the source tree (the checkout stays clean), installed with
``pip install --no-deps --no-index`` into a fresh ``--system-site-packages`` virtualenv (no
network: the dependencies come from the system site), and run from a temporary folder with
no source tree on the path. The test checks that the ``bida_app`` it runs is the venv's copy,
not the editable install of this checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bida_app.reports.collect import find_derivatives

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _source_files() -> list[Path]:
    """Tracked and new (not ignored) files of the checkout."""
    res = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    names = [p.decode() for p in res.stdout.split(b"\0") if p]
    return [Path(p) for p in names if (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build sdist + wheel (wheel from the sdist, as ``python -m build`` does) offline."""
    if not (ROOT / ".git").exists():
        pytest.fail("the wheel test needs a git checkout to know which files are sources")
    if importlib.util.find_spec("build") is None:
        pytest.fail("the `build` package is missing: pip install -e '.[test]'")
    src = tmp_path_factory.mktemp("src")
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    wheels = list(dist.glob("bida-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("bida-*.tar.gz")), sorted(dist.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    """A fresh virtualenv (system site packages visible) with only the wheel installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)],
        check=True,
        timeout=120,
    )
    res = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return env_dir


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(venv: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**_clean_env(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )


def test_wheel_carries_priors_templates_and_package_data(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [
        p.relative_to(ROOT).as_posix()
        for folder in ("bida_app/data", "bida_app/reports/templates")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and p.name != ".gitattributes"
    ]
    assert any(s.endswith(".safetensors") for s in shipped)
    missing = [s for s in shipped if s not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not any(n.startswith(("tests/", "docs/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bida = bida_app.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_wheel_is_what_runs(venv: Path, tmp_path: Path):
    res = _run(venv, tmp_path, "python", "-c", "import bida_app; print(bida_app.__file__)")
    assert res.returncode == 0, res.stderr
    where = Path(res.stdout.strip()).resolve()
    assert venv.resolve() in where.parents, f"imported {where}, not the wheel in {venv}"
    assert ROOT not in where.parents


def test_installed_wheel_version_and_shipped_priors(venv: Path, tmp_path: Path):
    res = _run(venv, tmp_path, "bida", "--version")
    assert res.returncode == 0, res.stderr
    assert (ROOT / "version").read_text().strip() in res.stdout + res.stderr
    res = _run(venv, tmp_path, "bida", "models", "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for plane in ("axial", "coronal", "sagittal"):
        assert f"{plane}: ok" in out, out


def test_installed_wheel_runs_the_demo(venv: Path, tmp_path: Path):
    res = _run(venv, tmp_path, "bida", "demo-data", "bids")
    assert res.returncode == 0, res.stderr
    res = _run(venv, tmp_path, "bida", "bids", "out", "participant")
    assert res.returncode == 0, res.stderr[-3000:]
    found = find_derivatives(tmp_path / "out")
    assert len(found) >= 2, res.stderr[-3000:]
    assert (tmp_path / "out" / "sub-01.html").is_file()
    for derivative in found:
        assert derivative.meta["SoftwareVersion"] == (ROOT / "version").read_text().strip()
