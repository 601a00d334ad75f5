"""``losslab hessian``: eigenpairs with certificates, trace, density, saddle index, sharpness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
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
    progress_bar,
)
from losslab.cli.demo import demo_step
from losslab.curvature import (
    extreme_eigenpairs,
    ggn_operator,
    hessian_operator,
    hutchinson,
    hutchpp,
    per_layer,
    saddle_index,
    sharpness,
    slq,
    xtrace,
)
from losslab.curvature.cost import estimate_curvature
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.store.serialize import decode, encode

__all__ = ["hessian_command"]

TRACE_METHODS = {"xtrace": xtrace, "hutchpp": hutchpp, "hutchinson": hutchinson}


def _to_arrays(result: Any) -> dict[str, np.ndarray]:
    """A result as the arrays of one resumable piece (its JSON spec rides along as a string)."""
    arrays: dict[str, np.ndarray] = {}
    spec = encode(result, "r", arrays)
    arrays["__spec__"] = np.asarray(json.dumps(spec))
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray]) -> Any:
    return decode(json.loads(str(arrays["__spec__"])), arrays)


@app.command("hessian")
@command
def hessian_command(
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
    top: Annotated[int, typer.Option(help="Largest eigenpairs to compute (with measured residuals).")] = 5,
    bottom: Annotated[int, typer.Option(help="Most negative eigenpairs (same Krylov space as --top).")] = 0,
    trace: Annotated[bool, typer.Option("--trace", help="Estimate the trace with an error bar.")] = False,
    density: Annotated[
        bool, typer.Option("--density", help="Spectral density by stochastic Lanczos quadrature.")
    ] = False,
    saddle: Annotated[
        bool,
        typer.Option(
            "--saddle",
            help="Saddle index: share and count of eigenvalues below -tau (implies --density, --bottom 5).",
        ),
    ] = False,
    sharp: Annotated[
        bool,
        typer.Option(
            "--sharpness",
            help="lambda_max, epsilon-sharpness, adaptive and average-case sharpness.",
        ),
    ] = False,
    ggn: Annotated[
        bool,
        typer.Option("--ggn", help="Use the generalized Gauss-Newton matrix (PSD) instead of the Hessian."),
    ] = False,
    layers: Annotated[
        bool,
        typer.Option("--per-layer", help="lambda_max and trace of each layer's diagonal block."),
    ] = False,
    tol: Annotated[
        float,
        typer.Option(help="Relative residual target of the eigenpairs: |Hv - lv| <= tol*|H|."),
    ] = 1e-5,
    max_hvps: Annotated[
        int | None, typer.Option(help="Product budget of the eigenpair run (default 40k + 400).")
    ] = None,
    trace_method: Annotated[
        str, typer.Option(help="hutchpp | xtrace | hutchinson (Hutch++ has the best-calibrated error bar).")
    ] = "hutchpp",
    trace_tol: Annotated[float, typer.Option(help="Stop the trace once its standard error <= this * |trace|.")] = 1e-2,
    trace_max_hvps: Annotated[int, typer.Option(help="Product budget of the trace.")] = 1000,
    starts: Annotated[int, typer.Option(help="Random starts of the density.")] = 4,
    steps: Annotated[int, typer.Option(help="Lanczos steps per density start.")] = 48,
    tau: Annotated[
        float | None,
        typer.Option(help="Saddle threshold: eigenvalues below -tau count (default 1e-3 * lambda_max)."),
    ] = None,
    eps: Annotated[float, typer.Option(help="Box size of epsilon-sharpness (Keskar et al. 2017).")] = 1e-3,
    rho: Annotated[float, typer.Option(help="Radius of adaptive sharpness (Kwon et al. 2021, l2).")] = 0.1,
    sigma: Annotated[float, typer.Option(help="Noise scale of average-case sharpness.")] = 0.01,
    estimate: EstimateOpt = False,
) -> None:
    """Curvature at a checkpoint: eigenpairs with residuals, trace, density, saddle, sharpness."""
    setup = Setup(model, data, checkpoint, loss, device, dtype, seed, label_noise)
    check_int(top, "top", "hessian", low=0)
    check_int(bottom, "bottom", "hessian", low=0)
    check_float(tol, "tol", "hessian", low=0.0, high=1.0, low_open=True)
    check_float(trace_tol, "trace_tol", "hessian", low=0.0, high=1.0, low_open=True)
    check_int(trace_max_hvps, "trace_max_hvps", "hessian", low=2)
    check_choice(trace_method, "trace_method", "hessian", TRACE_METHODS)
    check_int(starts, "starts", "hessian", low=2)
    check_int(steps, "steps", "hessian", low=2)
    if max_hvps is not None:
        check_int(max_hvps, "max_hvps", "hessian", low=1)
    if tau is not None:
        check_float(tau, "tau", "hessian", low=0.0)
    for name, value in (("eps", eps), ("rho", rho), ("sigma", sigma)):
        check_float(value, name, "hessian", low=0.0, low_open=True)
    if saddle:
        top, bottom, density = max(top, 1), max(bottom, 5), True
    if sharp:
        top = max(top, 1)
    if top + bottom == 0 and not (trace or density or layers):
        raise UserError(
            "Nothing to compute: ask for --top K, --bottom K, --trace, --density, --saddle, --sharpness or --per-layer."
        )
    objective = setup.objective()
    dim = objective.dim
    if top + bottom > dim:
        raise UserError(
            f"--top {top} and --bottom {bottom} ask for {top + bottom} eigenpairs but the "
            f"model has {dim} parameters: ask for at most {dim}."
        )
    if steps > dim:
        steps = dim
    theta = objective.theta0
    at = objective.curvature_at(theta)
    op = (ggn_operator if ggn else hessian_operator)(objective, at)

    pieces = [
        name
        for name, wanted in (
            ("eigen", top + bottom > 0),
            ("trace", trace),
            ("density", density),
            ("saddle", saddle),
            ("sharpness", sharp),
            ("layers", layers),
        )
        if wanted
    ]
    settings = {
        "top": top,
        "bottom": bottom,
        "ggn": ggn,
        "tol": tol,
        "max_hvps": max_hvps,
        "trace_method": trace_method if trace else None,
        "trace_tol": trace_tol,
        "trace_max_hvps": trace_max_hvps,
        "starts": starts,
        "steps": steps,
        "tau": tau,
        "eps": eps,
        "rho": rho,
        "sigma": sigma,
        "pieces": pieces,
    }
    run_config = {**setup.config(), "hessian": settings}
    if estimate:
        cost = estimate_curvature(
            at,
            top=top,
            bottom=bottom,
            max_hvps=max_hvps,
            trace=trace_method if trace else None,
            trace_max_hvps=trace_max_hvps,
            density=(starts, steps) if density else None,
            sharpness=sharp,
            per_layer=layers,
            ggn=ggn,
        )
        emit_estimate(cost, json_out)
        return
    with open_run(
        "hessian",
        out,
        config=run_config,
        force=force,
        seeds={"seed": seed},
        device=device,
        dtype=dtype,
    ) as run:
        chunks = run.chunks("hessian", run_config)

        def earlier(name: str) -> Any:
            return _from_arrays(chunks.load(pieces.index(name)))

        def piece(index: int) -> dict[str, np.ndarray]:
            name = pieces[index]
            if name == "eigen":
                high, low = extreme_eigenpairs(op, top, bottom, tol=tol, max_hvps=max_hvps, seed=seed)
                return _to_arrays({"top": high, "bottom": low})
            if name == "trace":
                return _to_arrays(TRACE_METHODS[trace_method](op, tol=trace_tol, max_hvps=trace_max_hvps, seed=seed))
            if name == "density":
                return _to_arrays(slq(op, starts=starts, steps=steps, seed=seed))
            if name == "saddle":
                pairs = earlier("eigen")
                return _to_arrays(
                    saddle_index(
                        op,
                        tau=tau,
                        density=earlier("density"),
                        top=pairs["top"],
                        bottom=pairs["bottom"],
                        seed=seed,
                    )
                )
            if name == "sharpness":
                return _to_arrays(
                    sharpness(
                        objective,
                        theta,
                        eps=eps,
                        rho=rho,
                        sigma=sigma,
                        top=None if ggn else earlier("eigen")["top"],  # λmax is the Hessian's
                        seed=seed,
                    )
                )
            return _to_arrays(per_layer(objective, at, ggn=ggn, seed=seed))

        with progress_bar("curvature", not json_out) as update:
            done = [_from_arrays(a) for a in chunks.map(piece, len(pieces), progress=update)]
        results: dict[str, Any] = {}
        for name, value in zip(pieces, done, strict=True):
            if name == "eigen":
                results.update({side: value[side] for side in ("top", "bottom") if len(value[side].eigenvalues)})
            else:
                results[name] = value
        summary: dict[str, Any] = {"operator": op.name, "dim": dim}
        summary.update({name: result.summary() for name, result in results.items()})
        finish(
            run,
            results,
            summary,
            json_out=json_out,
            title=f"{op.name} of {setup.model_spec} on {setup.data}",
        )


@demo_step("hessian", "Hessian of the trained MLP: top-5 with residuals, trace, density, saddle index")
def _demo_hessian(out: Path, force: bool, device: str) -> None:
    hessian_command(
        checkpoint=str(out.parent / "train"),
        out=out,
        force=force,
        device=device,
        top=5,
        trace=True,
        density=True,
        saddle=True,
        json_out=True,
    )
