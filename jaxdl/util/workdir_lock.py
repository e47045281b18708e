"""One writer per work directory: an exclusive lock the kernel holds for the process that writes there.

The lock is ``fcntl.flock`` on ``WORKDIR/.lock``: it is released when its holder exits, however it exits
(kill -9 included), so a stale lock cannot outlive a dead run. The file itself records the holder (host, PID,
start time) for the error a second writer gets. Within one process the lock is re-entrant: `fit` inside
`train_and_evaluate` holds it once.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket
import threading
from typing import Iterator

LOCK_NAME = ".lock"


class WorkdirError(ValueError):
    """A work directory that cannot be used: a file in its place, no permission to write, held by another run."""


class WorkdirBusyError(WorkdirError):
    """Another process holds the work directory's lock."""


_held: dict[pathlib.Path, int] = {}  # resolved workdir -> how many holders in this process
_held_lock = threading.Lock()


def check_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
    """Create ``workdir`` if needed and make sure it is a directory this process can write, raising
    `WorkdirError` with the fix otherwise (instead of a traceback from the first file written there)."""
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"the work directory {path} is a file, not a directory: pass another --workdir "
                           "(or move the file away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkdirError(f"cannot create the work directory {path}: {error.strerror}; pass a --workdir on a "
                           "writable disk") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise WorkdirError(f"the work directory {path} is not writable (read-only disk or no permission): pass a "
                           "--workdir on a writable disk")
    return path


def refuse_if_busy(workdir: str | pathlib.Path) -> None:
    """Raise `WorkdirBusyError` naming the holder when another process holds ``workdir``'s lock, without
    taking it: the command line calls this before importing JAX, so a second run fails in well under a
    second; `hold_workdir` still takes the lock for real later."""
    lock_file = pathlib.Path(workdir) / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:  # no lock file (a fresh directory) or none readable: hold_workdir decides
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise WorkdirBusyError(f"the work directory {pathlib.Path(workdir)} is in use by another run "
                               f"({_holder(lock_file)}); wait for it to finish or pass another --workdir") from None
    finally:
        os.close(fd)  # closing releases the probe's shared lock


def _holder(lock_file: pathlib.Path) -> str:
    try:
        holder = json.loads(lock_file.read_text() or "{}")
        return f"host {holder['host']}, PID {holder['pid']}, started {holder['started']}"
    except (OSError, ValueError, KeyError):  # the holder is writing its record right now
        return "a process whose record is not written yet"


@contextlib.contextmanager
def hold_workdir(workdir: str | pathlib.Path, writer: bool = True) -> Iterator[pathlib.Path]:
    """Hold ``workdir``'s exclusive lock for the duration, or raise `WorkdirBusyError` at once naming the
    holder; the directory is checked (and created) first with `check_workdir`. ``writer`` False (the other
    processes of a multi-host run, whose process 0 writes) only checks the directory."""
    path = check_workdir(workdir)
    if not writer:
        yield path
        return
    key = path.resolve()
    with _held_lock:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    lock_file = path / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WorkdirError(f"cannot create {lock_file}: {error.strerror}; pass a --workdir on a writable disk") from error
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusyError(f"the work directory {path} is in use by another run ({_holder(lock_file)}); wait "
                                   "for it to finish or pass another --workdir") from None
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        with _held_lock:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_lock:
                _held.pop(key, None)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
