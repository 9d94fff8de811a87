"""Device, autocast and CPU-thread policy: the one place that decides where torch runs.

The command line and the Nipype interfaces resolve ``--device`` once with
:func:`resolve_device` and pass the resulting :class:`torch.device` down unchanged, so a
``cuda:1`` request reaches every model and sampler as ``cuda:1``. Library functions never set
global thread counts; the interfaces call :func:`set_threads`. torch is imported lazily, so
the CPU counting helpers stay cheap for the argument parser.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BidaError, ExitCode

if TYPE_CHECKING:
    import torch

LOGGER = logging.getLogger(__name__)

MAX_OMP_NTHREADS = 8
"""Default ``--omp_nthreads`` is the available CPUs capped at this (as fMRIPrep does)."""

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_WARNED_FALLBACK = False


def check_device_spec(spec: str) -> str:
    """``spec`` normalised (lower case) when it names a device, else exit 64 (no torch import).

    Examples
    --------
    >>> check_device_spec("CUDA:1")
    'cuda:1'
    """
    text = str(spec).strip().lower()
    if not _DEVICE_RE.match(text):
        raise BidaError(f"--device {spec}: expected auto, cpu, cuda or cuda:N", ExitCode.USAGE)
    return text


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a ``--device`` value.

    Parameters
    ----------
    spec : str or torch.device
        ``"auto"`` (CUDA when visible, else the CPU with a warning), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``; a ``torch.device`` is checked and returned as is.

    Returns
    -------
    torch.device
        ``cuda:N`` keeps its index; ``cuda`` means the current CUDA device.

    Raises
    ------
    BidaError
        Exit 64 for a malformed spec, a CUDA request without a visible GPU, or an index
        beyond the visible GPUs.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    global _WARNED_FALLBACK
    text = check_device_spec("auto" if spec is None else str(spec))
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if not _WARNED_FALLBACK:
            LOGGER.warning(
                "no CUDA device visible: running on the CPU (Docker needs --gpus all, "
                "Singularity --nv); pass --device cpu to silence this warning"
            )
            _WARNED_FALLBACK = True
        return torch.device("cpu")
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BidaError(
                f"--device {text}: no CUDA device is visible to torch (Docker needs "
                "--gpus all, Singularity --nv)",
                ExitCode.USAGE,
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise BidaError(
                f"--device {text}: only {count} CUDA device(s) visible", ExitCode.USAGE
            )
    return dev


def amp_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype | None:
    """Autocast dtype of the networks on ``device`` (``None``: plain float32).

    ``"auto"`` is bfloat16 on CUDA and float32 on the CPU (CPUs without native bf16 run it
    slower than float32); ``"float32"``, ``"bfloat16"`` and ``"float16"`` force a dtype.

    Examples
    --------
    >>> import torch
    >>> amp_dtype(torch.device("cpu")) is None, amp_dtype(torch.device("cpu"), "bfloat16")
    (True, torch.bfloat16)
    """
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    table = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype must be one of {['auto', *table]}, got {dtype!r}")
    return table[dtype]


def autocast(device: torch.device, amp: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device`` to ``amp``, or a no-op context when ``amp`` is None."""
    import torch

    if amp is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=amp)


def _cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 CFS quota), if any."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    Containers (``docker --cpus``) and SLURM allocations restrict one or the other; plain
    ``os.cpu_count()`` sees every CPU of the host.

    Examples
    --------
    >>> available_cpus() >= 1
    True
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpus(Path(cgroup_root))
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def default_omp_nthreads(nprocs: int) -> int:
    """Threads per process when ``--omp_nthreads`` is not given: ``min(8, nprocs)``."""
    return max(1, min(MAX_OMP_NTHREADS, int(nprocs)))


def set_threads(n: int) -> int:
    """Use ``n`` CPU threads for torch, ITK and BLAS in this process; returns ``n``.

    Call it from interfaces and command lines, not from library functions.
    """
    import torch

    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    for var in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # BLAS keeps its own count
        pass
    return n


def cpu_workers(device: torch.device, jobs: int) -> tuple[int, int]:
    """How a CPU thread budget runs ``jobs`` independent sampler jobs (plane × sample).

    The budget is torch's thread count (what :func:`set_threads` gave this process). On the
    CPU it is spent on concurrent jobs first, one thread each, and only the rest on threads
    inside each job: small convolutions scale poorly over OpenMP threads, and on a shared
    machine OpenMP teams stall whenever one of their threads is descheduled, while
    independent jobs do not wait for each other. CUDA runs the jobs one after the other and
    leaves the thread count alone.

    Returns
    -------
    workers, threads_per_worker : int

    Examples
    --------
    >>> import torch
    >>> cpu_workers(torch.device("cuda:1"), 2) == (1, torch.get_num_threads())
    True
    """
    import torch

    budget = max(1, torch.get_num_threads())
    if device.type != "cpu":
        return 1, budget
    workers = max(1, min(budget, int(jobs)))
    return workers, max(1, budget // workers)


@contextmanager
def intraop_threads(n: int) -> Iterator[None]:
    """torch uses ``n`` threads per operation inside the block; the count is restored after."""
    import torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
