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

from losslab._io import atomic_write, write_json
from losslab.errors import UserError
from losslab.store.chunks import Chunks
from losslab.store.serialize import decode, encode

__all__ = ["Run", "RunDir", "load", "versions"]

SCHEMA = 1


def versions() -> dict[str, str]:
    """Versions of losslab and the libraries its numbers depend on."""
    import numpy
    import scipy
    import torch

    from losslab import __version__

    return {
        "losslab": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run directory being written. Create it with `RunDir.create`."""

    def __init__(self, path: Path, manifest: dict[str, Any], created: bool) -> None:
        self.path = path
        self.manifest = manifest
        self.created = created  # this process made the directory (remove it on a user error)
        self._t0 = time.perf_counter()

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
    ) -> RunDir:
        """Open ``path`` for a new run, resume a crashed one with the same config, or refuse.

        Refuses (a `UserError`) a complete run without ``force``, a run of another
        command or config without ``force``, a non-empty directory that is not a run,
        and a path that cannot be written.
        """
        path = Path(path)
        config = json.loads(json.dumps(config, default=str))  # what will be compared on resume
        created = not path.exists()
        old = None
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {str(path)!r} is a file: give a directory path.")
        if (path / "run.json").is_file():
            try:
                old = json.loads((path / "run.json").read_text())
            except (OSError, ValueError):
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
        elif path.is_dir() and any(path.iterdir()) and old is None and not force:
            raise UserError(
                f"{str(path)!r} is not empty and holds no losslab run: choose a new directory or pass --force."
            )
        if force and path.is_dir() and (old is not None or any(path.iterdir())):
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            old = None
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"Cannot write to --out {str(path)!r} ({exc.strerror}): choose a writable directory."
            ) from None
        manifest = {
            "schema": SCHEMA,
            "command": command,
            "argv": argv if argv is not None else sys.argv,
            "config": config,
            "versions": versions(),
            "seeds": seeds or {},
            "device": device,
            "dtype": dtype,
            "started": _now(),
            "ended": None,
            "wall_seconds": None,
            "status": "running",
            "resumed": old is not None,
            "error": None,
            "result": None,
            "results": {},
        }
        run = cls(path, manifest, created)
        run._write_manifest()
        return run

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

    def complete(self, summary: dict[str, Any]) -> None:
        self.manifest.update(
            status="complete", result=summary, ended=_now(), wall_seconds=round(time.perf_counter() - self._t0, 3)
        )
        self._write_manifest()

    def fail(self, error: str) -> None:
        self.manifest.update(
            status="failed", error=error, ended=_now(), wall_seconds=round(time.perf_counter() - self._t0, 3)
        )
        self._write_manifest()

    def discard(self) -> None:
        """Remove what this process created (after a user error: nothing half-written stays)."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            for name in ("run.json", "results", "figures", "report.html"):
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)


class Run:
    """A run read back from disk: its manifest and its result objects."""

    def __init__(self, path: Path, manifest: dict[str, Any], results: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.results = results

    @property
    def status(self) -> str:
        return str(self.manifest.get("status"))

    @property
    def command(self) -> str:
        return str(self.manifest.get("command"))

    @property
    def result(self) -> Any:
        """The run's first (main) result object, or None."""
        return next(iter(self.results.values()), None)

    def __getitem__(self, name: str) -> Any:
        return self.results[name]

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, command={self.command!r}, status={self.status!r}, results={list(self.results)})"
        )


def load(path: str | os.PathLike[str]) -> Run:
    """Read a run directory back: ``losslab.load("runs/x").result`` is the object the command computed."""
    # Every analysis package registers its result types on import.
    import losslab.connectivity  # noqa: F401
    import losslab.curvature  # noqa: F401
    import losslab.exact  # noqa: F401
    import losslab.studies  # noqa: F401
    import losslab.surface  # noqa: F401
    import losslab.train  # noqa: F401

    path = Path(path)
    manifest_path = path / "run.json"
    if not manifest_path.is_file():
        raise UserError(f"{str(path)!r} is not a losslab run (no run.json): give a directory written by losslab.")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        raise UserError(f"The run.json of {str(path)!r} is damaged ({exc}): rerun the command with --force.") from None
    results: dict[str, Any] = {}
    for name, entry in (manifest.get("results") or {}).items():
        try:
            if entry.get("file"):
                with np.load(path / entry["file"], allow_pickle=False) as arrays:
                    results[name] = decode(entry["value"], arrays)
            else:
                results[name] = decode(entry["value"], {})
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UserError(
                f"The result {name!r} of {str(path)!r} cannot be read ({type(exc).__name__}: {exc}): "
                "rerun the command with --force."
            ) from None
    return Run(path, manifest, results)
