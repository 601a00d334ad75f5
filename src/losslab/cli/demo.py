"""``losslab demo``: every capability on the digits MLP, one report, about four minutes on 2 cores.

Each capability adds one step: a function ``step(out, force, device) -> None`` that runs
its command (quietly) into ``out``. Steps run in order; a demo interrupted part-way
reuses the steps that completed when rerun.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from losslab.cli.app import app
from losslab.cli.common import (
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    OutOpt,
    RayOpt,
    cluster_executor,
    command,
    emit,
    open_run,
    quiet,
    ray_default,
    stderr,
)
from losslab.store import load

__all__ = ["DEMO_STEPS", "demo", "demo_step"]

_REPORT_ORDER = ("train", "surface", "surface-pca", "interpolate", "connect", "hessian")
DemoStep = Callable[[Path, bool, str], None]
DEMO_STEPS: list[tuple[str, str, DemoStep]] = []


def demo_step(name: str, title: str) -> Callable[[DemoStep], DemoStep]:
    """Register ``fn(out, force, device)`` as the demo step ``name`` (run in registration order)."""

    def add(fn: DemoStep) -> DemoStep:
        DEMO_STEPS.append((name, title, fn))
        return fn

    return add


DEMO_MODEL = "mlp:64-100-100-10"  # the digits MLP every demo step measures


def train_demo_model(out: Path, force: bool, device: str, seed: int = 0) -> None:
    """The demo's recipe: the digits MLP, 20 epochs of SGD (η 0.1, batches of 64) from ``seed``."""
    from losslab.cli.train import train_command

    recipe = {"data": "digits", "epochs": 20, "lr": 0.1, "batch_size": 64}
    train_command(model=DEMO_MODEL, out=out, force=force, device=device, seed=seed, json_out=True, **recipe)


@demo_step("train", "Train the digits MLP (mlp:64-100-100-10, SGD)")
def _train(out: Path, force: bool, device: str) -> None:
    train_demo_model(out, force, device)


@app.command()
@command
def demo(
    out: OutOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = "cpu",
    ray: RayOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the digits MLP, run every analysis on it, and write one report."""
    from losslab.report import Section, write_report

    config = {"device": device, "steps": [name for name, _, _ in DEMO_STEPS]}
    executor = cluster_executor(ray, device)  # one cluster for every step
    where = {"force": force, "device": device, "executor": executor}
    with open_run("demo", out or Path("demo-run"), config=config, **where) as run:
        sections, summary = [], {}
        for name, title, step in DEMO_STEPS:
            child = run.path / name
            done = (child / "run.json").is_file() and json.loads((child / "run.json").read_text()).get(
                "status"
            ) == "complete"
            start = time.perf_counter()
            if not done:
                stderr.print(f"demo: {title} …", markup=False)
                with quiet(), ray_default(ray):
                    step(child, False, device)
            loaded = load(child)
            summary[name] = {**(loaded.manifest.get("result") or {}), "seconds": round(time.perf_counter() - start, 2)}
            sections.append(Section(title, loaded.manifest, loaded.results, key=name))
        # The report reads in the order a reader asks: the model, its surface, then why it is where it is.
        sections.sort(key=lambda s: _REPORT_ORDER.index(s.key) if s.key in _REPORT_ORDER else len(_REPORT_ORDER))
        run.manifest.update(result=summary, status="complete")
        run.stop_clock()  # the report shows the wall time
        write_report(run.path / "report.html", "losslab demo", sections, run.path / "figures")
        run.complete(summary)
    emit(run.path, run.manifest, json_out)
