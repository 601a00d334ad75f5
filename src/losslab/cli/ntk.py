"""``losslab ntk`` (the empirical neural tangent kernel) and ``losslab spectra`` (per-layer α)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from losslab.cli.app import app
from losslab.cli.common import (
    CheckpointOpt,
    DataOpt,
    DeviceOpt,
    DtypeOpt,
    EstimateOpt,
    ForceOpt,
    JsonOpt,
    LabelNoiseOpt,
    LossOpt,
    ModelOpt,
    OutOpt,
    SeedOpt,
    Setup,
    command,
    emit_estimate,
    finish,
    open_run,
    stderr,
)
from losslab.cli.demo import demo_step
from losslab.ntk.run import NTKConfig
from losslab.ntk.run import estimate as estimate_ntk
from losslab.ntk.run import run as run_ntk
from losslab.spectra.run import SpectraConfig
from losslab.spectra.run import estimate as estimate_spectra
from losslab.spectra.run import run as run_spectra

__all__ = ["ntk_command", "spectra_command"]


@app.command("ntk")
@command
def ntk_command(
    model: ModelOpt = None,
    data: DataOpt = "digits",
    checkpoint: CheckpointOpt = None,
    loss: LossOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    seed: SeedOpt = 0,
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    label_noise: LabelNoiseOpt = None,
    rows: Annotated[int, typer.Option(help="Training rows the kernel is built on (Theta is [rows*k]^2).")] = 128,
    method: Annotated[
        str,
        typer.Option(help="auto | jacobian | ntvp (auto times both here and takes the cheaper)."),
    ] = "auto",
    top: Annotated[int, typer.Option(help="Largest kernel eigenvalues to print.")] = 10,
    block: Annotated[int, typer.Option(help="Examples per Jacobian block / columns per NTK-vector product.")] = 16,
    estimate: EstimateOpt = False,
) -> None:
    """Empirical NTK Theta(x, x') = J(x) J(x')^T at a checkpoint (or the initialization): spectrum and checks."""
    config = NTKConfig(rows=rows, method=method, top=top, block=block)
    setup = Setup(model, data, checkpoint, loss, device, dtype, seed, label_noise)
    if estimate:
        emit_estimate(estimate_ntk(setup, config), json_out)
        return
    run_config = {**setup.config(), "ntk": config.to_dict()}
    where = {"device": device, "dtype": dtype}
    with open_run("ntk", out, config=run_config, force=force, seeds={"seed": seed}, analysis=config, **where) as run:
        result = run_ntk(setup, config)
        for line in result.warnings():
            stderr.print(f"losslab: warning: {line}", markup=False)
        title = f"NTK of {setup.model_spec} on {result.n} rows of {setup.data}"
        finish(run, {"ntk": result}, result.summary(), json_out=json_out, title=title)


@app.command("spectra")
@command
def spectra_command(
    model: ModelOpt = None,
    data: DataOpt = "digits",
    checkpoint: CheckpointOpt = None,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    conv: Annotated[
        str, typer.Option(help="flatten: conv kernels as [out, in*k*k]; slices: k*k matrices [out, in], pooled.")
    ] = "flatten",
    min_tail: Annotated[int, typer.Option(help="Fewest eigenvalues a fitted tail may hold.")] = 10,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the interval on alpha.")] = 100,
    gof: Annotated[int, typer.Option(help="Synthetic sets of the goodness-of-fit p-value (Clauset et al. 2009).")] = 50,
    level: Annotated[float, typer.Option(help="Coverage of the bootstrap interval.")] = 0.9,
    min_size: Annotated[int, typer.Option(help="Skip weight matrices with a side smaller than this.")] = 10,
    estimate: EstimateOpt = False,
) -> None:
    """Per-layer ESD of W^T W: Marchenko-Pastur comparison, power-law alpha with interval, p-value, warnings."""
    config = SpectraConfig(
        conv=conv, min_tail=min_tail, bootstrap=bootstrap, gof=gof, level=level, min_size=min_size, seed=seed
    )
    setup = Setup(model, data, checkpoint, None, device, "float32", seed, None)
    if estimate:
        emit_estimate(estimate_spectra(setup, config), json_out)
        return
    run_config = {**setup.config(), "spectra": config.to_dict()}
    where = {"seeds": {"seed": seed}, "device": device}
    with open_run("spectra", out, config=run_config, force=force, analysis=config, **where) as run:
        result = run_spectra(setup, config)
        for line in result.warnings():
            stderr.print(f"losslab: warning: {line}", markup=False)
        where = setup.checkpoint or "initialization"
        title = f"Layer spectra of {setup.model_spec} ({where})"
        finish(run, {"spectra": result}, result.summary(), json_out=json_out, title=title)


@demo_step("ntk", "NTK of the trained MLP on 64 digits: spectrum, symmetry, PSD")
def _demo_ntk(out: Path, force: bool, device: str) -> None:
    ntk_command(checkpoint=str(out.parent / "train"), out=out, force=force, device=device, rows=64, json_out=True)


@demo_step("spectra", "Layer spectra of the trained MLP: alpha per layer, with intervals and warnings")
def _demo_spectra(out: Path, force: bool, device: str) -> None:
    spectra_command(checkpoint=str(out.parent / "train"), out=out, force=force, device=device, json_out=True)
