"""Run directories: one per command, with a manifest, arrays, figures and a report.

    DIR/run.json        what was asked, resolved config, versions, seeds, device, times, status, result
    DIR/results/*.npz   the arrays of each result object
    DIR/figures/*.png   static figures
    DIR/chunks/…        finished pieces of long work (resume after a crash)
    DIR/report.html     the self-contained report

Every file is written atomically. A complete run is never overwritten without
``force``; a run that crashed (status 'running' or 'failed') with the same config is
resumed from its chunks.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from losslab._config import config_record, rebuild_config
from losslab._io import atomic_write, write_json
from losslab._lockfile import LOCK_NAME, RunLock, run_status, unfinished_reason
from losslab.errors import UserError
from losslab.store.chunks import DAMAGED, Chunks, canonical_config, listen_for_reuse
from losslab.store.serialize import decode, encode

__all__ = ["Run", "RunDir", "load", "versions"]

SCHEMA = 2  # 2: result types named module:qualname (1: bare class names, still read)


def versions() -> dict[str, str]:
    """Versions of losslab and the libraries its numbers depend on."""
    import numpy
    import scipy
    import torch

    from losslab._version import __version__

    return {
        "losslab": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def environment() -> dict[str, Any]:
    """What ``losslab info`` prints: `versions`, torch's intra-op threads, huge pages, the CUDA devices."""
    import torch

    from losslab._allocator import HUGE_PAGES

    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        **versions(),
        "threads": torch.get_num_threads(),
        "huge_pages": HUGE_PAGES,
        "cuda": torch.cuda.is_available(),
        "cuda_devices": devices,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run directory being written, locked by this process. Create it with `RunDir.create`."""

    def __init__(self, path: Path, manifest: dict[str, Any], created: bool, lock: RunLock | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.created = created  # this process made the directory (remove it on a user error)
        self._lock = lock
        self._t0 = time.perf_counter()
        if lock is not None:
            listen_for_reuse(path, self._count_reuse)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        command: str,
        config: dict[str, Any],
        force: bool = False,
        argv: list[str] | None = None,
        seeds: dict[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        analysis: Any = None,
        executor: dict[str, Any] | None = None,
    ) -> RunDir:
        """Open ``path`` for a new run, resume a crashed one with the same config, or refuse.

        ``analysis`` (the analysis's config dataclass) is kept whole for `Run.config`;
        ``executor`` says where the pieces run (`Executor.describe`; default: this process).

        Refuses (a `UserError`) a directory another live process is writing (its lock),
        a complete run without ``force``, a run of another command or config without
        ``force``, a non-empty directory that is not a run, and a path that cannot be
        written. The lock is taken before anything is read or removed, so ``force`` never
        deletes a run that is still being written.
        """
        path = Path(path)
        config = canonical_config(config)  # what will be compared on resume
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {str(path)!r} is a file: give a directory path.")
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            lock = RunLock.acquire(path)
        except OSError as exc:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise UserError(
                f"Cannot write to --out {str(path)!r} ({exc.strerror}): choose a writable directory."
            ) from None
        except UserError:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        try:
            old = _previous(path, command, config, force)
            if force and _contents(path):
                for child in _contents(path):
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                old = None
            elif old is not None:
                _remove_temporaries(path)  # left by the process that was killed mid-write
        except BaseException:
            lock.release()
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        manifest = {
            "schema": SCHEMA,
            "command": command,
            "argv": argv if argv is not None else sys.argv,
            "config": config,
            "analysis": None if analysis is None else config_record(analysis),
            "versions": versions(),
            "seeds": seeds or {},
            "device": device,
            "dtype": dtype,
            "executor": executor or {"kind": "in-process", "workers": 1},
            "started": _now(),
            "ended": None,
            "wall_seconds": None,
            "status": "running",
            "resumed": False,  # True once finished chunks of an earlier process are reused
            "chunks_reused": 0,
            "pid": os.getpid(),
            "error": None,
            "result": None,
            "results": {},
        }
        run = cls(path, manifest, created, lock)
        run._write_manifest()
        return run

    def _count_reuse(self, count: int) -> None:
        self.manifest["chunks_reused"] += count
        self.manifest["resumed"] = True

    def _write_manifest(self) -> None:
        write_json(self.path / "run.json", self.manifest)

    def chunks(self, name: str, key: dict[str, Any]) -> Chunks:
        """Resumable chunks of long work under ``chunks/<name>``, valid for ``key``."""
        return Chunks(self.path / "chunks" / name, key)

    def save_result(self, name: str, result: Any) -> None:
        """Save a registered result object: arrays to results/<name>.npz, the rest to run.json."""
        arrays: dict[str, np.ndarray] = {}
        spec = encode(result, name, arrays)
        if arrays:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            atomic_write(self.path / "results" / f"{name}.npz", lambda f: f.write(buffer.getvalue()))
        self.manifest["results"][name] = {"file": f"results/{name}.npz" if arrays else None, "value": spec}
        self._write_manifest()

    def figure_path(self, name: str) -> Path:
        (self.path / "figures").mkdir(exist_ok=True)
        return self.path / "figures" / f"{name}.png"

    def stop_clock(self) -> None:
        """Record the end time and wall time now (so a report written before `complete` shows them)."""
        self.manifest.update(ended=_now(), wall_seconds=round(time.perf_counter() - self._t0, 3))

    def record(self, results: dict[str, Any], summary: dict[str, Any]) -> None:
        """Save a runner's ``results`` (name → result object) and mark the run complete with ``summary``."""
        for name, result in results.items():
            self.save_result(name, result)
        self.complete(summary)

    def complete(self, summary: dict[str, Any]) -> None:
        """Mark the run complete (keeping a clock stopped by `stop_clock`), clean up, release the lock."""
        if self.manifest.get("ended") is None:
            self.stop_clock()
        self.manifest.update(status="complete", result=summary)
        self._write_manifest()
        _remove_temporaries(self.path)
        self.release()

    def fail(self, error: str) -> None:
        self.stop_clock()
        self.manifest.update(status="failed", error=error)
        self._write_manifest()
        self.release()

    def release(self) -> None:
        """Give up the lock without changing the status (what a process that dies does)."""
        listen_for_reuse(self.path, None)
        if self._lock is not None:
            self._lock.release()

    def discard(self, error: str = "") -> None:
        """Remove what this process created (after a user error: nothing half-written stays).

        Finished pieces of long work are kept, not half-written: a user error late in a sweep
        (a setting the last point cannot take) must not cost the hours before it. Then the
        results, figures and report go, run.json says 'failed' with ``error``, and rerunning
        the same command resumes from the pieces.
        """
        if any(f.name != "key.json" for f in (self.path / "chunks").rglob("*.npz")):
            self._remove_outputs(keep_manifest=True)
            self.fail(error or "stopped by a user error")
            return
        self.release()
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self._remove_outputs(keep_manifest=False)

    def _remove_outputs(self, *, keep_manifest: bool) -> None:
        names = ("results", "figures", "report.html") + (() if keep_manifest else ("run.json",))
        for name in names:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        if keep_manifest:
            self.manifest.update(results={}, result=None)


def _contents(path: Path) -> list[Path]:
    """What a directory holds besides its lock (and a lock candidate a killed process left)."""
    return [child for child in path.iterdir() if not child.name.startswith(LOCK_NAME)]


def _previous(path: Path, command: str, config: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The manifest of the run already in ``path`` (None if none), or a `UserError` if it may not be reused."""
    old = None
    if (path / "run.json").is_file():
        try:
            old = json.loads((path / "run.json").read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict):
            old = None
    if old is not None and not force:
        if old.get("status") == "complete":
            raise UserError(
                f"{str(path)!r} already holds a complete {old.get('command', '')} run: "
                "pass --force to overwrite it or choose another --out."
            )
        if old.get("command") != command or old.get("config") != config:
            raise UserError(
                f"{str(path)!r} holds an unfinished run of another command or config: "
                "rerun that command to resume it, pass --force to start over, or choose another --out."
            )
    elif old is None and _contents(path) and not force:
        raise UserError(f"{str(path)!r} is not empty and holds no losslab run: choose a new directory or pass --force.")
    return old


def _remove_temporaries(path: Path) -> None:
    """Delete the ``.NAME.*.tmp`` files `atomic_write` leaves when its process is killed mid-write."""
    for tmp in path.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


class Run:
    """A run read back from disk: its manifest and its result objects."""

    def __init__(self, path: Path, manifest: dict[str, Any], results: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.results = results

    @property
    def status(self) -> str:
        """'complete', 'failed', 'running' (a live process is writing it) or 'interrupted'.

        A process killed outright cannot mark its run; its run.json still says 'running'
        but no live process holds the directory's lock, and that run is 'interrupted'.
        """
        return run_status(self.path, self.manifest) or str(self.manifest.get("status"))

    @property
    def command(self) -> str:
        return str(self.manifest.get("command"))

    @property
    def result(self) -> Any:
        """The run's first (main) result object, or None."""
        return next(iter(self.results.values()), None)

    @property
    def config(self) -> Any:
        """The config dataclass the run was made with, rebuilt from run.json (equal to the one given).

        Give it to the analysis's runner to compute the run again in Python.
        """
        record = self.manifest.get("analysis")
        if not record:
            raise UserError(
                f"The {self.command} run {str(self.path)!r} records no analysis config (an older run, or a "
                "command without one): read its settings from .manifest['config']."
            )
        try:
            return rebuild_config(record)
        except (ImportError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"The config of {str(self.path)!r} cannot be rebuilt ({type(exc).__name__}: {_one_line(exc)}): "
                "read its settings from .manifest['config'], or rerun the command with --force."
            ) from None

    def require_complete(self, use: str) -> Run:
        """This run, or a `UserError` if it did not finish (``use`` says what it was given for)."""
        why = unfinished_reason(self.status)
        if why is not None:
            raise UserError(
                f"The {self.command} run {str(self.path)!r} given as {use} is not complete ({why}): "
                "rerun its command to finish it, or give a complete run."
            )
        return self

    def __getitem__(self, name: str) -> Any:
        return self.results[name]

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, command={self.command!r}, status={self.status!r}, results={list(self.results)})"
        )


# The fields `losslab show`, `--checkpoint RUN` and the report read, and the JSON types they need.
_MANIFEST_SHAPE: dict[str, tuple[type, ...]] = {
    "command": (str,),
    "status": (str,),
    "config": (dict,),
    "result": (dict, type(None)),
    "results": (dict,),
    "argv": (list,),
    "seeds": (dict,),
    "versions": (dict,),
}


def _check_shape(manifest: Any) -> str | None:
    """What is wrong with the shape of a run.json, or None."""
    if not isinstance(manifest, dict):
        return f"it holds a JSON {type(manifest).__name__}, not an object"
    for key, types in _MANIFEST_SHAPE.items():
        if key in manifest and not isinstance(manifest[key], types):
            return f"'{key}' is a JSON {type(manifest[key]).__name__}"
    if not isinstance(manifest.get("command"), str):
        return "it names no command"
    for name, entry in (manifest.get("results") or {}).items():
        if not isinstance(entry, dict) or "value" not in entry or not isinstance(entry.get("file"), (str, type(None))):
            return f"the entry of result {name!r} is not an object with 'file' and 'value'"
        file = Path(entry.get("file") or "")
        if file.is_absolute() or ".." in file.parts:
            return f"the file of result {name!r} lies outside the run directory"
    return None


def load(path: str | os.PathLike[str]) -> Run:
    """Read a run directory back: ``losslab.load("runs/x").result`` is the object the command computed.

    A run.json or result file that is damaged, truncated or of another shape is a
    `UserError` naming the file, never a crash. Each result's type is imported when its
    saved name (``module:qualname``) is met, so this module imports no analysis.
    """
    path = Path(path)
    manifest_path = path / "run.json"
    if not manifest_path.is_file():
        raise UserError(f"{str(path)!r} is not a losslab run (no run.json): give a directory written by losslab.")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"The run.json of {str(path)!r} is damaged ({_one_line(exc)}): rerun the command with --force."
        ) from None
    problem = _check_shape(manifest)
    if problem is not None:
        raise UserError(
            f"The run.json of {str(path)!r} is damaged ({problem}): rerun the command with --force "
            "or give a directory written by losslab."
        )
    results: dict[str, Any] = {}
    for name, entry in (manifest.get("results") or {}).items():
        try:
            if entry.get("file"):
                # np.load leaks the file it opened when the zip is damaged: open and close it here
                with open(path / entry["file"], "rb") as f, np.load(f, allow_pickle=False) as arrays:
                    results[name] = decode(entry["value"], arrays)
            else:
                results[name] = decode(entry["value"], {})
        except (*DAMAGED, TypeError, AttributeError, ImportError) as exc:
            raise UserError(
                f"The result {name!r} of {str(path)!r} cannot be read ({type(exc).__name__}: {_one_line(exc)}): "
                "rerun the command with --force."
            ) from None
    return Run(path, manifest, results)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "…"
