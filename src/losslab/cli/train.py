"""``losslab train``: train one seed or a seed ensemble and keep the trajectory."""

from __future__ import annotations

from typing import Annotated

import typer

from losslab.cli.app import app
from losslab.cli.common import (
    BatchSizeOpt,
    LrOpt,
    MomentumOpt,
    OptimizerOpt,
    Options,
    StepBudgetOpt,
    command,
    config_from,
    emit_estimate,
    shared_options,
)
from losslab.errors import check_int
from losslab.train import TrainConfig, TrainRun, initial_thetas
from losslab.train import run as train  # the runner: this command's only work
from losslab.train.cost import estimate_training

__all__ = ["train_command"]


@app.command("train")
@command
@shared_options("estimate")
def train_command(
    opts: Options,
    optimizer: OptimizerOpt = "sgd",
    lr: LrOpt = 0.1,
    momentum: MomentumOpt = 0.9,
    weight_decay: Annotated[float, typer.Option(help="Coupled L2 weight decay.")] = 0.0,
    batch_size: BatchSizeOpt = 64,
    epochs: Annotated[int, typer.Option(help="Epoch budget.")] = 20,
    steps: StepBudgetOpt = None,
    schedule: Annotated[str, typer.Option(help="constant | cosine.")] = "constant",
    target_loss: Annotated[float | None, typer.Option(help="Stop once the train loss is ≤ this.")] = None,
    target_accuracy: Annotated[float | None, typer.Option(help="Stop once the train accuracy is ≥ this.")] = None,
    record_every: Annotated[int | None, typer.Option(help="Steps between records (default: each epoch).")] = None,
    snapshot_every: Annotated[int | None, typer.Option(help="Steps between saved θ (default: each record).")] = None,
    seeds: Annotated[
        int, typer.Option(help="Train this many seeds (seed, seed+1, …) together in one vmapped ensemble.")
    ] = 1,
    track_sharpness: Annotated[
        int | None,
        typer.Option("--track-sharpness", metavar="K", help="Record λmax every K steps (edge of stability)."),
    ] = None,
) -> None:
    """Train a model; writes the metrics, the trajectory, model.pt and init.pt (seed-K.pt per ensemble member)."""
    check_int(batch_size, "batch_size", "train", low=0)
    config = TrainRun(
        config_from(TrainConfig, locals(), batch_size=batch_size or None, seed=opts.seed),
        seeds=seeds,
        track_sharpness=track_sharpness,
    )
    setup = opts.setup()
    objective = setup.objective()
    thetas = initial_thetas(objective, config, model=None if setup.checkpoint else setup.model_spec)
    if opts.estimate:
        cost = estimate_training(objective, config.train, thetas=thetas, seeds=config.member_seeds)
        if track_sharpness is not None:
            cost.notes.append("The λmax tracking (--track-sharpness) is not included.")
        emit_estimate(cost, opts.json_out)
        return
    run_config = {**setup.config(), "train": config.train.to_dict(), "seeds": config.member_seeds}
    if track_sharpness is not None:
        run_config["track_sharpness"] = track_sharpness
    # Each member's initial weights (unless --checkpoint) and batch order; the forward's random
    # draws (dropout) are seeded by --seed and the step (result.seeds in run.json).
    seeds_record = {"seeds": config.member_seeds}
    with opts.open_run("train", run_config, seeds=seeds_record, analysis=config) as run:
        with opts.progress("training") as update:
            output = train(objective, config, store=run, thetas=thetas, progress=update)
        opts.finish(run, output.results, output.summary, title=f"train {setup.model_spec} on {setup.data}")
