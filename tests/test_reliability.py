"""Reliability (issue #16): bad input and faults give one line, the right exit code, and
leave neither bids_dir changed nor anything half-written in the output folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bida_app.cli.main import main
from bida_app.demo.dataset import DemoRun, make_demo_dataset
from bida_app.errors import BidaError, ExitCode
from bida_app.utils import lock
from bida_app.utils.io import atomic_path, is_temporary, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[1]
SMALL = (40, 60, 20)
ANISO = Path("sub-01") / "anat" / "sub-01_acq-coronal_T2w.nii.gz"


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def bids(tmp_path) -> Path:
    runs = (DemoRun("01", None, 1.0, 1.0, ("R", "A", "S"), 7),)
    return make_demo_dataset(tmp_path / "bids", shape=SMALL, runs=runs)


def _patch_header(path: Path, **fields) -> None:
    """Rewrite header fields of a .nii.gz in place, as a buggy converter would."""
    raw = gzip.decompress(path.read_bytes())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    for key, value in fields.items():
        hdr[key] = value
    path.write_bytes(gzip.compress(hdr.binaryblock + raw[348:]))


def _fails_cleanly(bids: Path, out: Path, capsys, code: int, *extra: str) -> str:
    """Run, expect ``code``, one error line, nothing created, bids_dir untouched."""
    before = _digest(bids)
    assert main([str(bids), str(out), "participant", *extra]) == code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("bida: error: "), err
    assert not out.exists()
    assert _digest(bids) == before
    return err[0]


# ------------------------------------------------------------------ options, checked first
def test_unknown_plugin_lists_the_valid_ones(bids, tmp_path, capsys):
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 64, "--plugin", "Nonsense")
    assert "Nonsense" in line and "MultiProc" in line and "Linear" in line


def test_plugin_args_must_be_a_json_object(bids, tmp_path, capsys):
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 64, "--plugin_args", "[1, 2]")
    assert "--plugin_args" in line and "JSON object" in line


def test_plugin_name_is_case_insensitive():
    from bida_app.cli.validate import check_options
    from bida_app.config import RunConfig

    cfg = RunConfig("b", "o", "participant", plugin="multiproc")
    check_options(cfg)
    assert cfg.plugin == "MultiProc"


def test_device_cuda_without_gpu_refused_before_work(bids, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        line = _fails_cleanly(
            bids, tmp_path / "out", capsys, 64, "--method", "bida", "--device", device
        )
        assert f"--device {device}" in line and "CUDA" in line


def test_device_with_cubic_warns_unused(caplog):
    from bida_app.cli.validate import check_options
    from bida_app.config import RunConfig

    with caplog.at_level("WARNING", logger="bida"):
        check_options(RunConfig("b", "o", "participant", method="cubic", device="cuda"))
    assert "--device" in caplog.text and "unused" in caplog.text


# ------------------------------------------------------------------ headers, before outputs
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"pixdim": [1, 0.5, 0, 0.5, 1, 1, 1, 1], "sform_code": 0}, "zero voxel size"),
        ({"pixdim": [1, 0.5, 0, 0.5, 1, 1, 1, 1]}, "zero voxel size"),
        ({"pixdim": [1, 0.5, np.nan, 0.5, 1, 1, 1, 1], "sform_code": 0}, "non-finite voxel"),
        ({"pixdim": [1, -0.5, 1, 0.5, 1, 1, 1, 1], "sform_code": 0}, "negative voxel size"),
        ({"dim": [3, 4096, 4096, 512, 1, 1, 1, 1]}, "do not match the file size"),
        ({"dim": [2, 40, 60, 1, 1, 1, 1, 1]}, "expected a 3D image"),
        ({"dim": [5, 40, 20, 60, 1, 2, 1, 1]}, "expected a 3D image"),
        ({"dim": [3, 40, 1, 60, 1, 1, 1, 1]}, "size < 2"),
        ({"magic": b"abc"}, "cannot read NIfTI header"),
        ({"srow_y": [0, np.inf, 0, 0]}, "non-finite"),
    ],
)
def test_bad_header_refused_up_front(bids, tmp_path, capsys, fields, expected):
    path = bids / ANISO
    _patch_header(path, **fields)
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 65)
    assert str(path) in line and expected in line


def test_empty_file(bids, tmp_path, capsys):
    (bids / ANISO).write_bytes(b"")
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 65)
    assert str(bids / ANISO) in line and "empty file" in line


def test_truncated_uncompressed_nifti(bids, tmp_path, capsys):
    src = nib.load(bids / ANISO)
    img = nib.Nifti1Image(np.asarray(src.dataobj), src.affine, src.header)
    (bids / ANISO).unlink()
    plain = bids / "sub-01" / "anat" / "sub-01_acq-coronal_T2w.nii"
    nib.save(img, plain)
    plain.write_bytes(plain.read_bytes()[:-1000])
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 65)
    assert str(plain) in line and "truncated" in line


def test_every_bad_run_listed_one_line_each(tmp_path, capsys):
    runs = tuple(DemoRun(s, None, 1.0, 1.0, ("R", "A", "S"), 7) for s in ("01", "02"))
    bids = make_demo_dataset(tmp_path / "bids", shape=SMALL, runs=runs)
    for sub in ("01", "02"):
        (bids / f"sub-{sub}" / "anat" / f"sub-{sub}_acq-coronal_T2w.nii.gz").write_bytes(b"")
    assert main([str(bids), str(tmp_path / "out"), "participant"]) == 65
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("empty file" in ln for ln in err)
    assert not (tmp_path / "out").exists()


def test_unreadable_file_is_missing_input(bids, monkeypatch):
    from bida_app.utils.nifti import check_header

    real_open = open

    def deny(path, *args, **kwargs):
        if str(path).endswith(".nii.gz"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(BidaError) as exc:
        check_header(bids / ANISO)
    assert exc.value.code == ExitCode.MISSING_INPUT and "Permission denied" in str(exc.value)


def _header_warnings(tmp_path: Path, affine: np.ndarray, qform: np.ndarray | None = None):
    from bida_app.utils.nifti import check_header

    img = nib.Nifti1Image(np.ones((8, 8, 4), np.float32), affine)
    if qform is not None:
        img.set_qform(qform, code=1)
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)
    return check_header(path)[1]


def test_shear_and_qform_sform_disagreement_warn(tmp_path):
    plain = np.diag([0.1, 0.1, 1.0, 1.0])
    assert _header_warnings(tmp_path, plain) == []
    sheared = plain.copy()
    sheared[0, 2] = 0.3
    assert any("sheared" in w for w in _header_warnings(tmp_path, sheared))
    shifted = plain.copy()
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    assert any("qform and sform disagree" in w for w in _header_warnings(tmp_path, plain, shifted))


def test_x10_header_warns_from_one_mm(bids, caplog):
    from bida_app.bids.discovery import describe_run

    path = bids / ANISO
    _patch_header(path, pixdim=[1, 1.0, 10.0, 1.0, 1, 1, 1, 1], sform_code=0, qform_code=1)
    with caplog.at_level("WARNING"):
        run = describe_run(path, bids, {"subject": "01"}, {})
    assert run.zooms == (1.0, 10.0, 1.0)
    assert "--header_scale 0.1" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize("value", [-1, 0, "abc", None, True, [1.0]])
def test_bad_slice_thickness_warns_naming_the_sidecar(bids, caplog, value):
    from bida_app.bids.discovery import describe_run

    path = bids / ANISO
    sidecar = path.with_name("sub-01_acq-coronal_T2w.json")
    sidecar.write_text(json.dumps({"SliceThickness": value}))
    with caplog.at_level("WARNING"):
        run = describe_run(path, bids, {"subject": "01"}, {"SliceThickness": value})
    assert run.thickness_source == "assumed equal to spacing"
    assert run.thickness_mm == run.spacing_mm
    assert str(sidecar) in caplog.text and repr(value) in caplog.text


def test_invalid_sidecar_json_names_the_file(bids, tmp_path, capsys):
    sidecar = bids / "sub-01" / "anat" / "sub-01_acq-coronal_T2w.json"
    sidecar.write_text("{not json")
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 65)
    assert str(sidecar) in line and "not valid JSON" in line


# ------------------------------------------------------------------ dataset-level input
def test_bids_dir_is_a_file(bids, tmp_path, capsys):
    line = _fails_cleanly(bids / ANISO, tmp_path / "out", capsys, 66)
    assert "is not a directory" in line


def test_missing_bids_version_one_line(bids, tmp_path, capsys):
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "x"}))
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 16)
    assert "BIDSVersion" in line and "dataset_description.json" in line


def test_invalid_description_json(bids, tmp_path, capsys, caplog):
    desc = bids / "dataset_description.json"
    desc.write_text("{oops")
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 16)
    assert str(desc) in line and "not valid JSON" in line
    from bida_app.bids.discovery import check_dataset_description

    with caplog.at_level("WARNING"):
        check_dataset_description(bids, validate=False)
    assert str(desc) in caplog.text and "not valid JSON" in caplog.text


def test_work_dir_equal_to_output_refused(bids, tmp_path, capsys):
    out = tmp_path / "out"
    line = _fails_cleanly(bids, out, capsys, 64, "-w", str(out))
    assert "work_dir" in line


def test_unexpected_error_is_one_line(bids, tmp_path, capsys, monkeypatch):
    from bida_app.cli import participant

    def boom(cfg):
        raise ValueError("first\nsecond")

    monkeypatch.setattr(participant, "run_participant", boom)
    assert main([str(bids), str(tmp_path / "o"), "participant"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "bida: error: unexpected ValueError: first second (run with -v for the traceback)"
    ]


# ------------------------------------------------------------------ atomic writes, temporaries
def test_bidsignore_and_config_written_atomically(tmp_path, monkeypatch):
    from bida_app.bids.derivatives import write_dataset_description
    from bida_app.config import RunConfig

    replaced = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(Path(b).name), real(a, b)))
    write_dataset_description(tmp_path, tmp_path)
    RunConfig("b", "o", "participant").to_toml(tmp_path / "config.toml")
    assert {".bidsignore", "dataset_description.json", "config.toml"} <= set(replaced)


def test_stale_temporaries_recognised_and_removed(tmp_path):
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    with pytest.raises(RuntimeError), atomic_path(anat / "sub-01_desc-cubic_T2w.nii.gz") as tmp:
        tmp.write_bytes(b"partial")
        assert is_temporary(tmp.name)
        raise RuntimeError
    assert not list(anat.iterdir())  # the failed write cleaned its temporary
    stale = anat / ".sub-01_desc-cubic_T2w.ab12cd34.bida-tmp.nii.gz"
    old_style = anat / ".sub-01_desc-cubic_T2w.q1w2e3r4.nii.gz"
    other = tmp_path / "sub-02" / "anat" / ".sub-02_desc-cubic_T2w.zz12cd34.bida-tmp.nii.gz"
    other.parent.mkdir(parents=True)
    user_file = anat / ".hidden_notes.txt"
    for p in (stale, old_style, other, user_file):
        p.write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path, ["sub-01"])
    assert sorted(removed) == sorted([stale, old_style])
    assert other.exists() and user_file.exists()
    os.utime(other, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path, ["sub-01"]) == [other]


def test_next_run_removes_temporaries_of_a_killed_one(bids, tmp_path):
    out = tmp_path / "out"
    anat = out / "sub-01" / "anat"
    anat.mkdir(parents=True)
    stale = anat / ".sub-01_acq-coronal_desc-cubic_T2w.k3j2l1x9.bida-tmp.nii.gz"
    stale.write_bytes(b"\x1f\x8b truncated")
    os.chmod(stale, 0o600)
    assert main([str(bids), str(out), "participant"]) == 0
    leftovers = [p for p in out.rglob(".*") if "work" not in p.relative_to(out).parts]
    assert [p.name for p in leftovers] == [".bidsignore"]


# ------------------------------------------------------------------ locks
_HOLD = (
    "import sys, time; from pathlib import Path; from bida_app.utils import lock; "
    "lock.acquire(Path(sys.argv[1]), 'test'); print('held', flush=True); time.sleep(60)"
)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_lock_held_by_a_live_process_refused(tmp_path):
    path = tmp_path / ".x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, env=_env(), text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.LockHeldError) as exc:
            lock.acquire(path, "sub-01")
        assert exc.value.code == ExitCode.TEMP_FAILURE
        assert f"pid {holder.pid}" in str(exc.value)
        with pytest.raises(lock.LockHeldError):
            lock.probe(path, "sub-01")
    finally:
        holder.kill()
        holder.wait()
    # its process is gone (as after kill -9): the lock is stale and taken over
    assert path.exists()
    lock.acquire(path, "sub-01")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release(path)
    assert not path.exists()


def test_stale_lock_without_flock_decided_by_pid(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl
    import socket

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    path = tmp_path / ".x.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 1}))
    with caplog.at_level("WARNING", logger="bida"):
        lock.acquire(path, "sub-01")
    assert "did not finish" in caplog.text
    lock.release(path)
    live = {"pid": os.getppid(), "host": socket.gethostname(), "started": 1}
    path.write_text(json.dumps(live))
    with pytest.raises(lock.LockHeldError):
        lock.acquire(path, "sub-01")


def _start(bids: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bida_app.cli.main", str(bids), str(out), "participant", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_second_run_into_same_output_refused_at_once(bids, tmp_path, capsys):
    out = tmp_path / "out"
    first = _start(bids, out)
    try:
        _wait_for(out / ".sub-01.bida.lock", first)
        t0 = time.monotonic()
        assert main([str(bids), str(out), "participant"]) == ExitCode.TEMP_FAILURE
        assert time.monotonic() - t0 < 10
        err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
        assert len(err) == 1 and "another bida run" in err[0] and f"pid {first.pid}" in err[0]
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert "sub-01_acq-coronal_desc-dccubic_T2w" in (out / "sub-01.html").read_text()
    assert not list(out.rglob("*.lock"))


def test_other_participants_share_output_and_work_dir(tmp_path, capsys):
    """SLURM arrays: a run on sub-02 goes on while another run holds sub-01."""
    runs = tuple(DemoRun(s, None, 1.0, 1.0, ("R", "A", "S"), 7) for s in ("01", "02"))
    bids = make_demo_dataset(tmp_path / "bids", shape=SMALL, runs=runs)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out / ".sub-01.bida.lock")],
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = [str(bids), str(out), "participant", "--participant_label"]
        assert main([*args, "01"]) == ExitCode.TEMP_FAILURE
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "sub-01 in" in err[0] and f"pid {holder.pid}" in err[0]
        assert not (out / "work").exists()  # refused before creating anything
        assert main([*args, "02"]) == 0
    finally:
        holder.kill()
        holder.wait()
    assert list(out.glob("sub-02/anat/*desc-dccubic_T2w.nii.gz"))
    assert not list(out.glob("sub-01/anat/*desc-*cubic*"))


@pytest.mark.slow
def test_kill_9_then_rerun_matches_a_clean_run(bids, tmp_path, clean_outputs):
    out = tmp_path / "out"
    proc = _start(bids, out)
    _wait_for(out / ".sub-01.bida.lock", proc)
    time.sleep(1.5)
    proc.kill()
    proc.communicate()
    assert (out / ".sub-01.bida.lock").exists()  # left behind by the killed run
    assert main([str(bids), str(out), "participant"]) == 0
    assert _outputs(out) == clean_outputs
    hidden = [p.name for p in out.rglob(".*") if "work" not in p.relative_to(out).parts]
    assert hidden == [".bidsignore"]


# ------------------------------------------------------------------ signals
def _outputs(out: Path) -> dict[str, object]:
    """Derivative data and sidecars without timings, to compare runs."""
    found: dict[str, object] = {}
    for p in sorted(out.glob("sub-*/**/*_desc-*")):
        key = p.relative_to(out).as_posix()
        if p.name.endswith(".nii.gz"):
            found[key] = hashlib.sha256(np.asarray(nib.load(p).dataobj).tobytes()).hexdigest()
        elif p.suffix == ".json":
            found[key] = _untimed(json.loads(p.read_text()))
    return found


def _untimed(meta: object) -> object:
    """A sidecar without its run times (they differ between any two runs)."""
    if isinstance(meta, dict):
        return {
            k: _untimed(v)
            for k, v in meta.items()
            if k not in ("Timings", "RuntimeSeconds", "elapsed_s", "seconds")
        }
    return meta


@pytest.fixture(scope="module")
def clean_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    runs = (DemoRun("01", None, 1.0, 1.0, ("R", "A", "S"), 7),)
    bids = make_demo_dataset(root / "bids", shape=SMALL, runs=runs)
    assert main([str(bids), str(root / "out"), "participant"]) == 0
    return _outputs(root / "out")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "delay"), [("SIGINT", 130, 0.5), ("SIGTERM", 143, 2.5)])
def test_signal_stops_cleans_and_resumes(bids, tmp_path, clean_outputs, sig, code, delay):
    out = tmp_path / "out"
    before = _digest(bids)
    proc = _start(bids, out)
    _wait_for(out / ".sub-01.bida.lock", proc)
    time.sleep(delay)
    proc.send_signal(getattr(signal, sig))
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    err = [ln for ln in stderr.splitlines() if "error" in ln.lower()]
    assert len(err) == 1 and f"interrupted by {sig}" in err[0]
    hidden = [p.name for p in out.rglob(".*") if "work" not in p.relative_to(out).parts]
    assert set(hidden) <= {".bidsignore"}, hidden
    assert main([str(bids), str(out), "participant"]) == 0
    assert _outputs(out) == clean_outputs
    assert _digest(bids) == before


# ------------------------------------------------------------------ help (issue #18, item 6)
def test_help_has_no_confusing_defaults_and_readme_groups(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-h"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for confusing in ("(default: True)", "(default: False)", "(default: None)", "(default: [])"):
        assert confusing not in text
    assert "skip N4 bias-field correction\n" in text
    groups = [
        "selecting data:",
        "super-resolution:",
        "input headers and preprocessing:",
        "resources and execution:",
        "outputs:",
        "other:",
    ]
    positions = [text.index(g) for g in groups]
    assert positions == sorted(positions)
    assert text.index("  --header_scale F") > text.index("input headers and preprocessing:")
    assert "examples:" in text and "75 busy" in text


@pytest.mark.parametrize("command", ["demo-data", "simulate", "train", "models", "evaluate"])
def test_every_subcommand_has_an_example(command, capsys):
    try:
        code = main([command, "-h"])
    except SystemExit as exc:
        code = exc.code
    assert code == 0
    text = capsys.readouterr().out
    epilog = text[text.rindex("example") :]
    assert f"bida {command}" in epilog or (command == "evaluate" and "bida evaluate" in text)
    assert "(default: False)" not in text and "(default: None)" not in text


def test_failing_node_is_one_line_with_its_exit_code(bids, tmp_path, monkeypatch):
    """A run that fails inside the workflow: one line naming the input, no Nipype traceback."""
    out = tmp_path / "out"
    code = (
        "import sys; from bida_app.errors import BadDataError\n"
        "import bida_app.preprocess.n4 as n4\n"
        "def boom(img, **kw): raise BadDataError('synthetic: the N4 mask is empty')\n"
        "n4.n4_correct = boom\n"
        "from bida_app.cli.main import main; sys.exit(main())\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(bids), str(out), "participant"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert res.returncode == ExitCode.BAD_DATA, res.stderr
    assert "Traceback" not in res.stderr and "nipype" not in res.stderr
    err = [ln for ln in res.stderr.splitlines() if " INFO: " not in ln]
    assert len(err) == 1 and str(bids / ANISO) in err[0] and "synthetic" in err[0], err
    assert "BadDataError" not in err[0]


@pytest.mark.parametrize(("value", "expected"), [(0.0, "no positive"), (3.0, "constant image")])
def test_blank_or_constant_image_refused_up_front(bids, tmp_path, capsys, value, expected):
    img = nib.load(bids / ANISO)
    data = np.full(img.shape, value, np.float32)
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bids / ANISO)
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 65)
    assert str(bids / ANISO) in line and expected in line


def test_broken_symlink_names_datalad(bids, tmp_path, capsys):
    path = bids / ANISO
    path.unlink()
    path.symlink_to(bids / ".git" / "annex" / "objects" / "missing")
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 66)
    assert str(path) in line and "broken symbolic link" in line


def test_os_error_while_writing_is_io_error(bids, tmp_path, capsys, monkeypatch):
    import errno

    from bida_app.cli import participant

    def full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "x.nii.gz"))

    monkeypatch.setattr(participant, "run_participant", full)
    assert main([str(bids), str(tmp_path / "o"), "participant"]) == ExitCode.IO_ERROR
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "x.nii.gz: No space left on device" in err[0]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["participant", "--bogus"], 64),
        (["everything"], 17),
        (["participant", "--nprocs", "0"], 64),
        (["participant", "--header_scale", "inf"], 64),
        (["participant", "--target_resolution", "nan"], 64),
        (["participant", "--eta", "nan"], 64),
    ],
)
def test_usage_errors_are_one_line(bids, tmp_path, capsys, args, code):
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(tmp_path / "out"), *args])
    assert exc.value.code == code
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("bida: error: "), err
    assert not (tmp_path / "out").exists()


def test_unreadable_bids_dir(bids, tmp_path, capsys, monkeypatch):
    from bida_app.bids import discovery

    real = os.access
    monkeypatch.setattr(
        discovery.os, "access", lambda p, mode: False if Path(p) == bids else real(p, mode)
    )
    line = _fails_cleanly(bids, tmp_path / "out", capsys, 66)
    assert str(bids) in line and "permission denied" in line
