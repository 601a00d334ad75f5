"""One writer per run directory: a lock file holding the writer's pid, and the status it implies.

Below every package (it imports only `losslab.errors`), so `losslab.models` can check
that a checkpoint's run finished without importing the run store.

``DIR/.lock`` holds ``<pid> <host>``. It is created atomically (the pid is written to a
temporary file that is then hard-linked to the lock's name, so a reader never sees a
half-written lock), removed when the run ends, and removed by `atexit` when the
process exits without ending the run. A process killed outright (SIGKILL, power loss)
leaves its lock behind; the next writer finds that pid gone and takes the lock over
(stale-lock detection by pid liveness). A lock written on another host cannot be
checked from here and is treated as held.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from pathlib import Path

from losslab.errors import UserError

__all__ = ["LOCK_NAME", "RunLock", "lock_holder", "run_status", "unfinished_reason"]

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def lock_holder(directory: str | os.PathLike[str]) -> int | None:
    """The pid of the live process holding ``directory``'s lock, or None (no lock, or a stale one)."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text()
    except OSError:
        return None
    pid, host = _parse(text)
    if pid is None:
        return None
    if host is not None and host != socket.gethostname():
        return pid  # cannot check a pid of another machine: assume it is alive
    return pid if _alive(pid) else None


def run_status(directory: str | os.PathLike[str], manifest: dict | None = None) -> str | None:
    """The status of the losslab run in ``directory`` (None if it holds none).

    'complete', 'failed', 'running' (a live process holds the lock) or 'interrupted':
    a process killed outright cannot mark its run, so its run.json still says
    'running' while no live process holds the lock.
    """
    if manifest is None:
        try:
            manifest = json.loads((Path(directory) / "run.json").read_text())
        except (OSError, ValueError):
            return None
    if not isinstance(manifest, dict) or "schema" not in manifest:
        return None
    status = str(manifest.get("status"))
    if status == "running" and lock_holder(directory) is None:
        return "interrupted"
    return status


def unfinished_reason(status: str | None) -> str | None:
    """Why a run of this status cannot be used as input (None for a complete run or no run)."""
    if status in (None, "complete"):
        return None
    return {
        "running": "another process is still writing it",
        "interrupted": "its process was killed before it finished",
        "failed": "it failed",
    }.get(status, f"its status is {status!r}")


def _parse(text: str) -> tuple[int | None, str | None]:
    parts = text.split()
    try:
        pid = int(parts[0])
    except (IndexError, ValueError):
        return None, None
    return (pid if pid > 0 else None), (parts[1] if len(parts) > 1 else None)


def _link(source: Path, target: Path) -> None:
    """Create ``target`` with ``source``'s content, failing with FileExistsError if it exists."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: exclusive create (a reader may see it empty)
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(source.read_text())


class RunLock:
    """The lock of one run directory, held by this process until `release`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self.held = False
        self._text = f"{os.getpid()} {socket.gethostname()}\n"

    @classmethod
    def acquire(cls, directory: str | os.PathLike[str]) -> RunLock:
        """Take the lock, or raise a `UserError` naming the live process that holds it."""
        lock = cls(Path(directory))
        tmp = lock.directory / f".lock-candidate-{os.getpid()}"  # not *.tmp: resumes delete those
        tmp.write_text(lock._text)
        try:
            for _ in range(3):  # a stale lock removed by someone else between our tries: try again
                try:
                    _link(tmp, lock.path)
                except FileExistsError:
                    holder = lock_holder(lock.directory)
                    if holder is not None:
                        raise UserError(
                            f"{str(lock.directory)!r} is being written by another losslab process (pid {holder}): "
                            "wait for it to finish or choose another --out (if no such process runs, "
                            f"delete {str(lock.path)!r})."
                        ) from None
                    lock.path.unlink(missing_ok=True)  # stale: its writer is gone
                    continue
                lock.held = True
                atexit.register(lock.release)
                return lock
        finally:
            tmp.unlink(missing_ok=True)
        raise UserError(
            f"Cannot take the lock {str(lock.path)!r}: another process keeps replacing it; choose another --out."
        )

    def release(self) -> None:
        """Remove the lock if it is still ours (idempotent)."""
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        try:
            if self.path.read_text() == self._text:
                self.path.unlink()
        except OSError:
            pass
