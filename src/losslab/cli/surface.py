"""``losslab surface`` and ``losslab interpolate``: loss-surface slices and the MLI curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
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
    RayOpt,
    SeedOpt,
    Setup,
    command,
    emit_estimate,
    finish,
    open_run,
    progress_bar,
)
from losslab.cli.demo import demo_step
from losslab.errors import UserError, check_choice, check_int
from losslab.models import build_model
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, seconds_per_point
from losslab.parallel import get_executor
from losslab.store import load
from losslab.surface import (
    DIRECTION_KINDS,
    Surface,
    axis,
    fit_range,
    interpolate,
    line,
    make_directions,
    plane,
    plane_key,
    project,
)
from losslab.surface.slices import SCALES
from losslab.train import TrainResult

__all__ = ["interpolate_command", "surface_command"]

RangeOpt = tuple[float, float] | None
SplitOpt = Annotated[
    str,
    typer.Option("--split", help="train: the training split; test: the test split too (train and test)."),
]
ScaleOpt = Annotated[str, typer.Option("--scale", help="How figures draw the loss: auto | linear | log.")]


def _train_run(path: Path, option: str) -> TrainResult:
    run = load(path)
    result = run.result
    if not isinstance(result, TrainResult):
        kind = f"a {run.command}" if result is not None else "an empty"
        raise UserError(
            f"{option} needs a train run directory with one seed; {str(path)!r} holds {kind} run: "
            "give the --out of 'losslab train'."
        )
    return result


def _point(setup: Setup, objective: Objective, spec: str, option: str, run: Path | None) -> torch.Tensor:
    """θ of a checkpoint, a train run, or 'init' (the run's init.pt, else the seeded init)."""
    if spec == "init":
        if run is not None and (run / "init.pt").is_file():
            return objective.as_theta(setup.build_model(checkpoint=str(run / "init.pt")), option)
        return objective.as_theta(build_model(setup.model_spec, seed=setup.seed), option)
    path = Path(spec)
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise UserError(f"{option} {spec!r} has no model.pt: give a train run or a .pt file.")
        path = path / "model.pt"
    return objective.as_theta(setup.build_model(checkpoint=str(path)), option)


def _run_dir(spec: str | None) -> Path | None:
    return Path(spec) if spec is not None and spec != "init" and Path(spec).is_dir() else None


@app.command("surface")
@command
def surface_command(
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
    ray: RayOpt = None,
    dirs: Annotated[str, typer.Option("--dirs", help="filter | layer | random | pca (with --pca-from).")] = "filter",
    steps: Annotated[int, typer.Option(help="Points per axis, both ends included.")] = 51,
    range_: Annotated[
        RangeOpt,
        typer.Option(
            "--range",
            help="MIN MAX of a (and b). Default -1 1; for PCA axes the trajectory's extent.",
        ),
    ] = None,
    y_steps: Annotated[int | None, typer.Option(help="Points along b (default: --steps).")] = None,
    y_range: Annotated[RangeOpt, typer.Option(help="MIN MAX of b (default: --range).")] = None,
    split: SplitOpt = "train",
    pca_from: Annotated[
        Path | None,
        typer.Option("--pca-from", help="A train run: PCA of its trajectory; its snapshots are drawn."),
    ] = None,
    toward: Annotated[
        str | None,
        typer.Option(help="A checkpoint, train run or 'init': d₁ = that point − θ; d₂ from --dirs."),
    ] = None,
    dirs_from: Annotated[
        Path | None,
        typer.Option("--dirs-from", help="Reuse the directions and center of an earlier surface run."),
    ] = None,
    include_bias: Annotated[
        bool,
        typer.Option(help="Normalize biases and norm parameters (as whole vectors), not zero them."),
    ] = False,
    orthogonalize: Annotated[bool, typer.Option(help="Make d₂ orthogonal to d₁ (Gram–Schmidt).")] = False,
    line_only: Annotated[bool, typer.Option("--line", help="A 1-D slice along d₁ instead of a plane.")] = False,
    scale: ScaleOpt = "auto",
    rows_per_chunk: Annotated[
        int | None, typer.Option(help="Grid rows per resumable piece (default: ≈256 points).")
    ] = None,
    estimate: EstimateOpt = False,
) -> None:
    """Loss (and accuracy) on a plane or line through θ: L(θ + a d₁ + b d₂); resumable."""
    check_choice(dirs, "dirs", "surface", DIRECTION_KINDS)
    check_choice(split, "split", "surface", ("train", "test"))
    check_choice(scale, "scale", "surface", SCALES)
    check_int(steps, "steps", "surface", low=2)
    if y_steps is not None:
        check_int(y_steps, "y_steps", "surface", low=2)
    for name, rng in (("range", range_), ("y_range", y_range)):
        if rng is not None:
            axis(rng[0], rng[1], 2, name=name)  # validates min < max now, before any work
    if rows_per_chunk is not None:
        check_int(rows_per_chunk, "rows_per_chunk", "surface", low=1)
    if dirs == "pca" and pca_from is None:
        raise UserError("--dirs pca needs a trajectory: pass --pca-from TRAIN_RUN (the --out of losslab train).")

    saved: Surface | None = None
    given_checkpoint = checkpoint
    if dirs_from is not None:
        earlier = load(dirs_from)
        saved = earlier.result if isinstance(earlier.result, Surface) else None
        if saved is None:
            raise UserError(f"--dirs-from needs a surface run; {str(dirs_from)!r} is a {earlier.command} run.")
        config = earlier.manifest.get("config", {})
        model = model or config.get("model")
        data = data if data != "digits" else config.get("data", data)
        loss = loss or config.get("loss")
        checkpoint = checkpoint or config.get("checkpoint")  # its buffers (batch norm) too
    train_result = _train_run(pca_from, "--pca-from") if pca_from is not None else None
    trajectory_run = pca_from
    if checkpoint is None and pca_from is not None:
        checkpoint = str(pca_from)
    checkpoint_run = _run_dir(checkpoint)
    if train_result is None and checkpoint_run is not None:
        found = load(checkpoint_run).result  # a train run as --checkpoint: draw its trajectory too
        if isinstance(found, TrainResult):
            train_result, trajectory_run = found, checkpoint_run
    setup = Setup(model, data, checkpoint, loss, device, dtype, seed, label_noise)
    objective = setup.objective()
    test = objective.on(split="test") if split == "test" else None
    snapshots = train_result.snapshots if train_result is not None else None
    if saved is not None:
        if saved.directions.dim != objective.dim:
            raise UserError(
                f"--dirs-from {str(dirs_from)!r} holds directions of length {saved.directions.dim} "
                f"but the model has {objective.dim} parameters: use that run's --model."
            )
        directions = saved.directions
        theta = objective.as_theta(saved.theta) if given_checkpoint is None else objective.theta0
    else:
        theta = objective.theta0
        target = _point(setup, objective, toward, "--toward", checkpoint_run) if toward else None
        directions = make_directions(
            objective.layout,
            theta,
            dirs,
            seed=seed,
            include_bias=include_bias,
            orthogonal=orthogonalize,
            toward=target,
            snapshots=snapshots,
            count=1 if line_only else 2,
            toward_label=f"toward {toward}",
        )

    trajectory = None
    if train_result is not None and directions.d2 is not None:
        trajectory = project(
            train_result.snapshots,
            theta.cpu().numpy(),
            directions.d1,
            directions.d2,
            steps=train_result.snapshot_steps,
            objective=objective,
            source=str(trajectory_run),
        )
    elif saved is not None and given_checkpoint is None:
        trajectory = saved.trajectory  # same center and directions: the same projection

    def axis_range(given: RangeOpt, which: int) -> tuple[float, float]:
        if given is not None:
            return given
        if directions.kind[which] == "pca" and trajectory is not None:
            return fit_range(trajectory.coords[:, which])
        if directions.kind[which] == "pca" and train_result is not None:  # a line: d₁ alone
            d = np.asarray(directions.d1, dtype=np.float64)
            offsets = train_result.snapshots.astype(np.float64) - theta.double().cpu().numpy()
            return fit_range(offsets @ d / (d @ d))
        return (-1.0, 1.0)

    lo, hi = axis_range(range_, 0)
    a = axis(lo, hi, steps, name="range")
    config = {
        **setup.config(),
        "dirs": dirs,
        "steps": steps,
        "range": [lo, hi],
        "split": split,
        "pca_from": str(pca_from) if pca_from else None,
        "toward": toward,
        "dirs_from": str(dirs_from) if dirs_from else None,
        "include_bias": include_bias,
        "orthogonalize": orthogonalize,
        "line": line_only,
        "scale": scale,
    }
    if not line_only:
        y_lo, y_hi = y_range if y_range is not None else (range_ if range_ is not None else axis_range(None, 1))
        b = axis(y_lo, y_hi, y_steps or steps, name="y_range")
        config.update(y_steps=y_steps or steps, y_range=[y_lo, y_hi], rows_per_chunk=rows_per_chunk)
    if estimate:
        points = len(a) if line_only else len(a) * len(b)
        work = [
            Work(
                f"grid points, train split ({objective.n:,} rows)", points, points, seconds_per_point(objective, theta)
            )
        ]
        if test is not None:
            work.append(
                Work(f"grid points, test split ({test.n:,} rows)", points, points, seconds_per_point(test, theta))
            )
        notes = [f"Evaluated on the '{objective.many_path}' path; a resumed run skips the pieces already saved."]
        emit_estimate(Estimate("surface", work, notes), json_out)
        return
    with open_run(
        "surface",
        out,
        config=config,
        force=force,
        seeds={"directions": seed},
        device=device,
        dtype=dtype,
    ) as run:
        if line_only:
            result: Any = line(objective, theta, directions, a, test=test, scale=scale)
            name = "line"
        else:
            chunks = run.chunks(
                "plane",
                plane_key(objective, theta, directions, a, b, test=test, rows_per_chunk=rows_per_chunk),
            )
            executor = get_executor(ray) if ray else None
            with progress_bar("surface", not json_out) as update:
                result = plane(
                    objective,
                    theta,
                    directions,
                    a,
                    b,
                    test=test,
                    chunks=chunks,
                    executor=executor,
                    rows_per_chunk=rows_per_chunk,
                    trajectory=trajectory,
                    scale=scale,
                    progress=update,
                )
            name = "surface"
        shape = f"{len(a)} points" if line_only else f"{len(a)}×{len(b)}"
        what = f"{'/'.join(directions.kind)}, {shape}"
        title = f"loss {name} ({what}) of {setup.model_spec} on {setup.data}"
        finish(run, {name: result}, result.summary(), json_out=json_out, title=title)


@app.command("interpolate")
@command
def interpolate_command(
    to: Annotated[str, typer.Option("--to", help="The end point: a checkpoint (.pt) or a train run.")],
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="The start: a checkpoint, a train run, or 'init' (the run's init.pt, "
            "else the model's seeded initialization).",
        ),
    ] = "init",
    model: ModelOpt = None,
    data: DataOpt = "digits",
    loss: LossOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    seed: SeedOpt = 0,
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    label_noise: LabelNoiseOpt = None,
    steps: Annotated[int, typer.Option(help="Values of α, both ends included.")] = 51,
    range_: Annotated[tuple[float, float], typer.Option("--range", help="MIN MAX of α (0 is --from, 1 is --to).")] = (
        0.0,
        1.0,
    ),
    split: SplitOpt = "train",
    scale: ScaleOpt = "auto",
) -> None:
    """The loss along (1 − α) θ_from + α θ_to; from init, the MLI curve (Goodfellow et al. 2015)."""
    check_choice(split, "split", "interpolate", ("train", "test"))
    check_choice(scale, "scale", "interpolate", SCALES)
    alphas = axis(range_[0], range_[1], steps, owner="interpolate")
    to_run = _run_dir(to)
    setup = Setup(model, data, to, loss, device, dtype, seed, label_noise)
    objective = setup.objective()
    test = objective.on(split="test") if split == "test" else None
    theta_b = objective.theta0
    theta_a = _point(setup, objective, from_, "--from", to_run)
    config = {
        **setup.config(),
        "from": from_,
        "to": to,
        "steps": steps,
        "range": list(range_),
        "split": split,
        "scale": scale,
    }
    with open_run("interpolate", out, config=config, force=force, device=device, dtype=dtype) as run:
        result = interpolate(objective, theta_a, theta_b, alphas, test=test, labels=(from_, to), scale=scale)
        title = f"linear interpolation {from_} → {to} ({setup.model_spec} on {setup.data})"
        finish(run, {"interpolation": result}, result.summary(), json_out=json_out, title=title)


@demo_step("surface", "Loss surface around the trained digits MLP (filter-normalized plane)")
def _demo_surface(out: Path, force: bool, device: str) -> None:
    surface_command(
        checkpoint=str(out.parent / "train"),
        dirs="filter",
        steps=41,
        split="test",
        out=out,
        force=force,
        device=device,
        json_out=True,
    )


@demo_step("surface-pca", "Loss surface along the training trajectory (PCA plane, Li et al. 2018)")
def _demo_surface_pca(out: Path, force: bool, device: str) -> None:
    train_run = out.parent / "train"
    surface_command(
        checkpoint=str(train_run),
        dirs="pca",
        pca_from=train_run,
        steps=41,
        out=out,
        force=force,
        device=device,
        json_out=True,
    )


@demo_step("interpolate", "Monotonic linear interpolation from initialization to the solution")
def _demo_interpolate(out: Path, force: bool, device: str) -> None:
    interpolate_command(
        to=str(out.parent / "train"),
        from_="init",
        steps=51,
        split="test",
        out=out,
        force=force,
        device=device,
        json_out=True,
    )
