"""A real one-node SLURM cluster: ``--plugin SLURM`` and the array script match a Linear run.

The fixture starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian's ``munge`` and
``slurm-wlm`` packages, installed by ``scripts/setup.sh``) from a private configuration in a
temporary folder, on free ports, and stops exactly those processes afterwards. The test is
skipped, with the reason, only where these programs are not installed or cannot run (not
root).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bida_app.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
ARRAY_SCRIPT = ROOT / "scripts" / "slurm_array.sh"
PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
LABELS = ("01", "02")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.8)
    return 2048


SLURM_CONF = """\
ClusterName=bidatest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=30
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


class Cluster:
    """A running one-node cluster: its folder, config and environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def submitted(self) -> int:
        """Batch jobs the controller has accepted so far (from its log)."""
        log = self.root / "slurmctld.log"
        return log.read_text().count("_slurm_rpc_submit_batch_job") if log.exists() else 0

    def run(self, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout
        )


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    missing = [p for p in PROGRAMS if not shutil.which(p)]
    if missing:
        pytest.skip(
            f"SLURM TEST SKIPPED: {', '.join(missing)} not installed; scripts/setup.sh installs "
            "them on Debian/Ubuntu (apt-get install slurmctld slurmd slurm-client munge)"
        )
    if os.geteuid() != 0:
        pytest.skip("SLURM TEST SKIPPED: slurmd must run as root to start jobs")
    root = Path(f"/tmp/bida-slurm-{os.getpid()}")  # short: the munge socket path is limited
    root.mkdir(mode=0o700)
    (root / "state").mkdir()
    (root / "spool").mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    conf = SLURM_CONF.format(
        root=root,
        host=host,
        ctld_port=_free_port(),
        d_port=_free_port(),
        cpus=os.cpu_count() or 1,
        mem=_mem_mb(),
    )
    c = Cluster(root)
    c.conf.write_text(conf)
    pid_files = [root / "slurmd.pid", root / "slurmctld.pid", root / "munged.pid"]
    try:
        for cmd in (
            ["munged", "--force", f"--socket={root}/munge.sock", f"--key-file={key}",
             f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
             f"--seed-file={root}/munged.seed"],
            ["slurmctld", "-f", str(c.conf)],
            ["slurmd", "-f", str(c.conf), "-N", host],
        ):  # fmt: skip
            res = c.run(*cmd)
            assert res.returncode == 0, f"{cmd[0]} did not start: {res.stderr}"
        for _ in range(60):
            state = c.run("sinfo", "-h", "-o", "%t").stdout.strip()
            if state in ("idle", "mix", "alloc"):
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(p.read_text()[-1500:] for p in root.glob("*.log"))
            pytest.fail(f"the one-node SLURM cluster did not come up (state {state!r}):\n{logs}")
        yield c
    finally:
        for pid_file in pid_files:
            _stop(pid_file)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def linear(tmp_path_factory) -> dict[str, Path]:
    """The demo's two participants run with the Linear plugin (the reference).

    In a fresh process, as each SLURM job is: ITK fixes its thread count when it first runs in
    a process, so an in-process run after other tests could use another count (N4's sums then
    differ in the last bits).
    """
    root = tmp_path_factory.mktemp("slurm-demo")
    bids, out = root / "bids", root / "linear"
    assert main(["demo-data", str(bids), "--small"]) == 0
    args = [str(bids), str(out), "participant", "--participant_label", *LABELS]
    cmd = [sys.executable, "-m", "bida_app.cli.main", *args, "--omp_nthreads", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return {"root": root, "bids": bids, "out": out}


def _assert_same_outputs(out: Path, reference: Path) -> None:
    images = sorted(reference.glob("sub-*/**/anat/*_desc-*_T2w.nii.gz"))
    subjects = {p.relative_to(reference).parts[0] for p in images}
    assert subjects == {f"sub-{label}" for label in LABELS}
    for subject in subjects:
        assert (out / f"{subject}.html").is_file()
    for ref in images:
        got = out / ref.relative_to(reference)
        assert got.is_file(), got
        a, b = nib.load(got), nib.load(ref)
        assert np.array_equal(a.affine, b.affine)
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), got.name
        meta_a = json.loads(got.with_name(got.name.replace(".nii.gz", ".json")).read_text())
        meta_b = json.loads(ref.with_name(ref.name.replace(".nii.gz", ".json")).read_text())
        assert meta_a.keys() == meta_b.keys(), got.name
        for key in ("Method", "MethodParameters", "Geometry", "DataConsistencyResidual"):
            assert meta_a.get(key) == meta_b.get(key), key


def test_plugin_slurm_runs_jobs_through_sbatch_and_matches_linear(cluster, linear):
    out = linear["root"] / "slurm-plugin"
    before = cluster.submitted()
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        code = main(
            [str(linear["bids"]), str(out), "participant", "--participant_label", *LABELS,
             "--plugin", "SLURM", "--plugin_args", '{"sbatch_args": "-p debug"}',
             "--omp_nthreads", "1"]
        )  # fmt: skip
    finally:
        os.environ.pop("SLURM_CONF", None)
    assert code == 0
    jobs = cluster.submitted() - before
    batch_logs = list(out.glob("work/**/batch/slurm-*.out"))
    assert jobs >= 2 * len(LABELS), f"only {jobs} sbatch jobs reached slurmctld"
    assert len(batch_logs) == jobs, "every node ran as a SLURM job"
    _assert_same_outputs(out, linear["out"])


def test_array_script_runs_one_participant_per_task_then_the_group(cluster, linear):
    out = linear["root"] / "slurm-array"
    labels = linear["root"] / "participants.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    logs = linear["root"] / "slurm-logs"
    logs.mkdir()
    cluster.env.update(
        BIDA=f"{sys.executable} -m bida_app.cli.main",
        BIDA_WORK_ROOT=str(linear["root"] / "array-work"),
    )
    before = cluster.submitted()
    res = cluster.run(
        "sbatch", "--parsable", f"--array=1-{len(LABELS)}", "-o", f"{logs}/%A_%a.out",
        str(ARRAY_SCRIPT), str(linear["bids"]), str(out), str(labels), "--omp_nthreads", "1",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    array_id = res.stdout.strip().split(";")[0]
    res = cluster.run(
        "sbatch", "--wait", f"--dependency=afterok:{array_id}", "-o", f"{logs}/group.out",
        "--wrap", f"{cluster.env['BIDA']} {linear['bids']} {out} group",
        timeout=600,
    )  # fmt: skip
    task_logs = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.out")))
    assert res.returncode == 0, f"{res.stderr}\n{task_logs}"
    assert cluster.submitted() - before == 2  # the array and the group job
    assert sorted(p.name for p in logs.glob(f"{array_id}_*.out")) == [
        f"{array_id}_{i}.out" for i in range(1, len(LABELS) + 1)
    ]
    _assert_same_outputs(out, linear["out"])
    assert (out / "group_report.html").is_file()
    works = sorted((linear["root"] / "array-work").iterdir())
    assert [w.name for w in works] == [f"bida-work-{array_id}-{i}" for i in (1, 2)]
    status = json.loads((out / "logs" / "bida_status.json").read_text())
    assert {e["subject"] for e in status if e["status"] == "done"} == set(LABELS)


def test_logname_is_set_where_the_environment_lacks_it(monkeypatch):
    """Nipype's SLURM plugin reads ``$LOGNAME`` (a ``KeyError`` in bare containers)."""
    from bida_app.workflows.execute import batch_user_env

    monkeypatch.delenv("LOGNAME", raising=False)
    name = batch_user_env()
    assert name and os.environ["LOGNAME"] == name
    monkeypatch.setenv("LOGNAME", "someone")
    assert batch_user_env() == "someone"
