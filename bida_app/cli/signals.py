"""SIGINT/SIGTERM/SIGHUP: stop the run promptly, clean up, exit 130/143/129 with one line.

Nipype turns an exception raised inside a node (``KeyboardInterrupt`` included) into a failed
node and carries on with the rest of the graph. So the signal is not turned into an exception:
the C-level handler writes the signal number to a socket (:func:`signal.set_wakeup_fd`) and a
watcher thread, woken at once, stops the worker processes, removes this run's temporaries and
locks, prints one line and ends the process. Nipype's work directory keeps every finished
node, so running the same command again resumes. A long native call that holds the GIL (one
ITK N4 fit) delays the stop until it returns.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from ..utils import lock
from ..utils.io import live_temporaries

#: Signals handled and the exit code each one gives (128 + signal number).
HANDLED = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
_CLEANUPS: dict[str, Callable[[], object]] = {}
_STATE: dict[str, object] = {}


def on_interrupt(key: str, callback: Callable[[], object]) -> None:
    """Call ``callback`` (no arguments) before the process ends on a signal.

    A later callback with the same ``key`` replaces the earlier one.
    """
    _CLEANUPS[key] = callback


def install() -> bool:
    """Install the handlers (main thread only; idempotent). Return True if installed."""
    if _STATE.get("installed"):
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    rsock, wsock = socket.socketpair()
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    for signum in HANDLED:
        signal.signal(signum, _ignore)
    thread = threading.Thread(target=_watch, args=(rsock,), name="bida-signals", daemon=True)
    thread.start()
    _STATE.update(installed=True, socks=(rsock, wsock), thread=thread)
    return True


def _ignore(signum: int, frame: object) -> None:
    """Python-level handler: nothing to do, the watcher thread acts."""


def _watch(rsock: socket.socket) -> None:
    while True:
        try:
            data = rsock.recv(64)
        except OSError:
            return
        for signum in data:
            if signum in HANDLED:
                terminate(signum)


def terminate(signum: int) -> None:
    """Stop child processes, clean up, print one line and end the process (never returns)."""
    _kill_descendants()
    for path in live_temporaries():
        try:
            os.unlink(path)
        except OSError:
            pass
    for callback in list(_CLEANUPS.values()):
        try:
            callback()
        except Exception:  # best effort while exiting
            pass
    lock.release_all()
    name = signal.Signals(signum).name
    os.write(  # the newline first ends a progress bar's unfinished line
        2,
        f"\nbida: error: interrupted by {name}; outputs finished so far are kept, run the same "
        "command again to resume\n".encode(),
    )
    os._exit(HANDLED.get(signum, 128 + signum))


def _descendants(pid: int) -> list[int]:
    """PIDs of every descendant of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _kill_descendants(grace_s: float = 1.0) -> None:
    """SIGTERM the worker processes, then SIGKILL those still there after ``grace_s``."""
    pids = _descendants(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except OSError:
                continue
        if not alive or sig == signal.SIGKILL:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_running(p) for p in alive):
            time.sleep(0.05)
        pids = [p for p in alive if _running(p)]


def _running(pid: int) -> bool:
    """True while ``pid`` runs; reaps it first if it is a finished child of ours."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (a grandchild) or already reaped
        pass
    return lock.pid_alive(pid)
