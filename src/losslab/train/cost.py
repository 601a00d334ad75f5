"""What a training run will cost: optimizer steps and full-data records, timed here.

A step's time is measured by training: a run of ``2s`` steps minus a run of ``s`` steps
(both record only at their start and end), so the difference is ``s`` steps of the
real loop — batch draw, forward, backward, optimizer — and nothing else. A record is the
full-data loss and accuracy of every member on the train (and test) split.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work, best_seconds, seconds_per_point
from losslab.train.config import TrainConfig
from losslab.train.trainer import train, train_ensemble

__all__ = ["estimate_training"]

_NEVER = 1 << 40  # record_every / snapshot_every beyond any budget: only the start and the end


def _seconds_per_step(
    objective: Objective, config: TrainConfig, thetas: torch.Tensor | None, seeds: list[int], steps: int
) -> float:
    timing = replace(
        config,
        steps=steps,
        record_every=_NEVER,
        snapshot_every=_NEVER,
        target_loss=None,
        target_accuracy=None,
    )
    longer = replace(timing, steps=2 * steps)

    def run(cfg: TrainConfig) -> None:
        if thetas is None:
            train(objective, cfg, test=False)
        else:
            train_ensemble(objective, cfg, thetas=thetas, seeds=seeds, test=False)

    short_s = best_seconds(lambda: run(timing), objective.device, repeats=2)
    long_s = best_seconds(lambda: run(longer), objective.device, repeats=2)
    difference = (long_s - short_s) / steps
    # Timing noise can swamp a tiny difference; the whole longer run is then an upper bound.
    return difference if difference > 0 else long_s / (2 * steps)


def estimate_training(
    objective: Objective,
    config: TrainConfig,
    *,
    thetas: torch.Tensor | None = None,
    seeds: list[int] | None = None,
    test: Objective | bool | None = True,
    timing_steps: int = 16,
) -> Estimate:
    """The steps and records of ``train`` (or ``train_ensemble`` with ``thetas`` [K, D]) and their time.

    With a loss or accuracy target the run may stop early: the step count is then only a
    bound. Callbacks (sharpness tracking) are not included.
    """
    members = 1 if thetas is None else len(thetas)
    total = config.total_steps(objective.n)
    every = config.record_steps(objective.n)
    records = config.record_count(objective.n)
    early = config.target_loss is not None or config.target_accuracy is not None
    step_s = _seconds_per_step(objective, config, thetas, seeds or [config.seed], min(timing_steps, total))
    theta = objective.theta0 if thetas is None else thetas[0]
    record_s = members * seconds_per_point(objective, theta)
    test_obj = objective.test_objective(test)
    if test_obj is not None:
        record_s += members * seconds_per_point(test_obj, theta)
    who = "" if members == 1 else f", all {members} members together"
    epochs = total / config.steps_per_epoch(objective.n)
    work = [
        Work(f"optimizer steps ({config.optimizer}, {config.batch_rows(objective.n)} rows{who})", total, total, step_s),
        Work(
            "full-data records (train" + (" and test" if test_obj is not None else "") + " loss and accuracy)",
            records,
            records,
            record_s,
        ),
    ]
    notes = [f"{total:,} steps = {epochs:.3g} epochs of {objective.n:,} rows, a record every {every:,} steps."]
    if early:
        work = [replace(w, count=None) for w in work]
        notes.append("A loss or accuracy target may stop the run early: the counts are bounds.")
    timed = min(timing_steps, total)
    notes.append(f"A step's time is measured by training {timed} and {2 * timed} steps here.")
    return Estimate("train", work, notes)
