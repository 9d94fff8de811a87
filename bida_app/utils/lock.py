"""Run locks: one bida run at a time per participant of an output folder and per work folder.

A lock is a small JSON file (``pid``, ``host``, ``started``) held with ``flock`` while the run
lasts and removed when it ends. A run killed with ``kill -9`` leaves the file behind, but not
the ``flock``: the next run sees a stale lock, says so and takes it over. On file systems
without ``flock`` the PID and host recorded in the file decide whether the holder still runs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BidaError, ExitCode

LOGGER = logging.getLogger("bida")
#: Locks this process holds now: path -> open file descriptor.
_HELD: dict[str, int] = {}


class LockHeldError(BidaError):
    """Another live bida run holds a lock (exit 75, temporary failure)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.TEMP_FAILURE)


def _describe(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}"


def _busy(path: Path, what: str) -> str:
    return (
        f"{path}: another bida run ({_describe(_read(path))}) is processing {what}; "
        "wait for it to finish, or give this run another output or work directory"
    )


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder_alive(info: dict) -> bool:
    """Fallback without ``flock``: does the recorded holder still run?"""
    if info.get("host") != socket.gethostname():
        return True  # cannot tell for another machine: assume it runs
    pid = int(info.get("pid", 0) or 0)
    return pid != os.getpid() and pid_alive(pid)


def acquire(path: Path, what: str) -> None:
    """Take the lock ``path`` for this process or raise :class:`LockHeldError` at once.

    Parameters
    ----------
    path : Path
        Lock file (its folder must exist).
    what : str
        What the lock protects, for the messages (e.g. ``"sub-01 in /out"``).
    """
    key = str(path)
    if key in _HELD:
        return
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            have_flock = True
        except BlockingIOError:
            os.close(fd)
            raise LockHeldError(_busy(path, what)) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            have_flock = False
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # removed by its holder in between: try again
            same = False
        if not same:
            os.close(fd)
            continue
        previous = _read(path)
        if previous.get("pid") and not have_flock and _holder_alive(previous):
            os.close(fd)
            raise LockHeldError(
                f"{path}: another bida run ({_describe(previous)}) is processing {what}; "
                "if it is no longer running, remove this file"
            )
        if previous.get("pid"):
            LOGGER.warning(
                "%s: a previous run (%s) did not finish; resuming", what, _describe(previous)
            )
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        _HELD[key] = fd
        return
    raise LockHeldError(f"{path}: could not take the lock for {what} (it keeps changing)")


def probe(path: Path, what: str) -> None:
    """Raise :class:`LockHeldError` if a live run holds ``path``; create and take nothing.

    Lets a second run refuse before it checks its inputs; :func:`acquire` still decides.
    """
    if str(path) in _HELD:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockHeldError(_busy(path, what)) from None
    except OSError:
        pass
    finally:
        os.close(fd)


def release(path: Path) -> None:
    """Remove the lock file ``path`` and drop the lock (no-op if not held)."""
    fd = _HELD.pop(str(path), None)
    if fd is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
    os.close(fd)


def release_all() -> None:
    """Release every lock of this process (async-signal-tolerant: no logging, no locks)."""
    for key in list(_HELD):
        release(Path(key))


def held() -> list[str]:
    """Paths of the locks this process holds."""
    return list(_HELD)


class RunLocks:
    """Context manager taking several locks in order; released in reverse on exit.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with RunLocks([(d / ".a.lock", "a")]):
    ...     (d / ".a.lock").exists()
    True
    >>> (d / ".a.lock").exists()
    False
    """

    def __init__(self, locks: list[tuple[Path, str]]) -> None:
        self.locks = list(locks)

    def __enter__(self) -> RunLocks:
        taken: list[Path] = []
        try:
            for path, what in self.locks:
                acquire(path, what)
                taken.append(path)
        except BaseException:
            for path in reversed(taken):
                release(path)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for path, _ in reversed(self.locks):
            release(path)


@contextmanager
def dir_lock(folder: Path) -> Iterator[None]:
    """Hold a blocking ``flock`` on ``folder`` itself (no lock file) for a short update."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # no flock on this file system: go on unlocked
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        yield
    finally:
        os.close(fd)
