"""``losslab connect`` and ``losslab instability``: loss barriers between solutions (parse → config → runner)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from losslab import connectivity
from losslab._loading import load_callable
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
from losslab.cli.demo import DEMO_MODEL, demo_step, train_demo_model
from losslab.connectivity import CURVE_CONFIG, ConnectConfig
from losslab.errors import UserError
from losslab.studies import InstabilityConfig

__all__ = ["connect_command", "instability_command"]

BnResetOpt = Annotated[
    bool,
    typer.Option(
        "--bn-reset/--no-bn-reset",
        help="Re-estimate batch-norm statistics at every point of a path (default on).",
    ),
]


def _checkpoint_file(spec: str, which: str) -> str:
    path = Path(spec)
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise UserError(f"{which} {spec!r} is a directory without model.pt: give a train run or a .pt file.")
        return str(path / "model.pt")
    if not path.is_file():
        raise UserError(f"{which} {spec!r} does not exist: give a state_dict file or a train run directory.")
    return spec


def _raw_state(path: str) -> dict[str, Any] | None:
    """A checkpoint's tensors, or None when unreadable (load_checkpoint then says why)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state if isinstance(state, dict) else None


def _same_architecture(path_a: str, path_b: str) -> None:
    a, b = _raw_state(path_a), _raw_state(path_b)
    if a is None or b is None:
        return
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in a or key not in b:
            where = "CKPT_B" if key not in a else "CKPT_A"
            raise UserError(
                f"CKPT_A and CKPT_B are of different architectures: the first differing key "
                f"is {key!r} (only in {where}). Connect two checkpoints of the same model."
            )
        shape_a, shape_b = tuple(getattr(a[key], "shape", ())), tuple(getattr(b[key], "shape", ()))
        if shape_a != shape_b:
            raise UserError(
                f"CKPT_A and CKPT_B are of different architectures: the first differing key "
                f"is {key!r} (shape {shape_a} in CKPT_A, {shape_b} in CKPT_B). "
                "Connect two checkpoints of the same model."
            )


def _load_spec(spec: str | None) -> Any:
    """A permutation spec from a JSON file or a ``path/to/file.py:function`` returning one."""
    if spec is None:
        return None
    if spec.endswith(".json"):
        try:
            return json.loads(Path(spec).read_text())
        except OSError as exc:
            raise UserError(f"The spec file {spec!r} cannot be read ({exc.strerror}): check the path.") from None
        except ValueError as exc:
            raise UserError(
                f"The spec file {spec!r} is not valid JSON ({exc}): write {{group: [[name, axis], ...]}}."
            ) from None
    return load_callable(spec, "spec")()


def _ints(text: str, option: str, command_name: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"The '{option}' option of {command_name} must be comma-separated integers like 0,10,50. Got {text!r}."
        ) from None


@app.command("connect")
@command
@shared_options("estimate", without=("checkpoint",))
def connect_command(
    checkpoint_a: Annotated[str, typer.Argument(metavar="CKPT_A", help="Network A: a state_dict file or a train run.")],
    checkpoint_b: Annotated[str, typer.Argument(metavar="CKPT_B", help="Network B, of the same architecture.")],
    opts: Options,
    align: Annotated[
        str, typer.Option(help="none | weight | activation: permute B's hidden units to match A.")
    ] = "weight",
    repair: Annotated[
        bool, typer.Option("--repair", help="Also REPAIR the aligned line (Jordan et al. 2023).")
    ] = False,
    path: Annotated[
        str,
        typer.Option(help="line | bezier | chain: also train a curve with a bend to the (aligned) B."),
    ] = "line",
    points: Annotated[int, typer.Option(help="Points along each path, both endpoints included (≥ 2).")] = 25,
    spec: Annotated[
        str | None,
        typer.Option(
            help="Permutation spec: FILE.json {group: [[name, axis], ...]} or file.py:function. "
            "Default: derived from the model."
        ),
    ] = None,
    bn_reset: BnResetOpt = True,
    curve_epochs: Annotated[int, typer.Option(help="Epochs of training the curve's bend (--path bezier|chain).")] = 20,
    curve_lr: Annotated[float, typer.Option(help="Learning rate of the bend (momentum SGD).")] = 0.05,
) -> None:
    """Loss and error barriers between two networks, before and after aligning B's units to A's."""
    seed = opts.seed
    curve = replace(CURVE_CONFIG, lr=curve_lr, epochs=curve_epochs, seed=seed) if path != "line" else None
    config = ConnectConfig(
        align=align, repair=repair, path=path, points=points, bn_reset=bn_reset, seed=seed, curve=curve
    )
    file_a, file_b = _checkpoint_file(checkpoint_a, "CKPT_A"), _checkpoint_file(checkpoint_b, "CKPT_B")
    _same_architecture(file_a, file_b)
    setup = opts.setup(checkpoint=checkpoint_a)
    objective, model_b = setup.objective(), setup.build_model(checkpoint=file_b)
    user_spec = _load_spec(spec)
    if opts.estimate:
        emit_estimate(connectivity.estimate_connect(objective, config, spec=user_spec), opts.json_out)
        return
    recorded = {**setup.config(), "checkpoint_b": file_b, **config.to_dict(), "spec": spec}
    with opts.open_run("connect", recorded, seeds={"seed": seed}, analysis=config) as run:
        with opts.progress("connecting") as update:
            result = connectivity.run(objective, objective.model, model_b, config, spec=user_spec, progress=update)
        title = f"connect {Path(file_a).name} ↔ {Path(file_b).name} ({setup.model_spec} on {setup.data})"
        opts.finish(run, {"connect": result}, result.summary(), title=title)


@app.command("instability")
@command
@shared_options("ray", "estimate", without=("checkpoint",))
def instability_command(
    opts: Options,
    optimizer: OptimizerOpt = "sgd",
    lr: LrOpt = 0.1,
    momentum: MomentumOpt = 0.9,
    batch_size: BatchSizeOpt = 64,
    epochs: Annotated[int, typer.Option(help="Epoch budget of every run.")] = 10,
    steps: StepBudgetOpt = None,
    ks: Annotated[
        str | None,
        typer.Option(help="Split steps, comma-separated (default: 0 and 1/64 … 1/2 of the budget)."),
    ] = None,
    points: Annotated[int, typer.Option(help="Points on the line between the two copies (≥ 2).")] = 11,
    bn_reset: BnResetOpt = True,
) -> None:
    """Instability analysis (Frankle et al. 2020): barrier between two copies split at step k.

    One run trains to each k; two copies continue with batch orders seed+1 and seed+2
    for the rest of the budget; the barrier on the line between them is measured.
    It is the study "losslab study instability" with these settings.
    """
    split_steps = tuple(_ints(ks, "ks", "instability")) if ks is not None else None
    setup = opts.setup()
    config = config_from(
        InstabilityConfig,
        locals(),
        model=setup.model_spec,
        data=opts.data,
        loss=opts.loss,
        label_noise=opts.label_noise,
        batch_size=batch_size or None,
        ks=split_steps,
        seed=opts.seed,
    )
    # Imported here: cli.study registers the study commands and demo steps, which come last.
    from losslab.cli.study import execute_study

    title = f"instability of {config.model} on {opts.data}"
    execute_study("instability", config, command_name="instability", title=title, **opts.run_options())


def _demo_seed(path: Path, seed: int, force: bool, device: str) -> Path:
    """model.pt of the demo's digits MLP trained from ``seed``, trained once."""
    from losslab.store import load

    if not ((path / "run.json").is_file() and load(path).status == "complete"):
        train_demo_model(path, force, device, seed)
    return path / "model.pt"


@demo_step("connect", "Connect two seeds of the digits MLP: naive vs weight-matched barrier")
def _demo(out: Path, force: bool, device: str) -> None:
    from losslab.store import load

    # Seed 0 is the demo's own train step (same model and recipe) when it is there.
    first = out.parent / "train"
    run = load(first) if (first / "run.json").is_file() else None
    reuse = run is not None and run.status == "complete" and run.manifest["config"].get("model") == DEMO_MODEL
    a = first / "model.pt" if reuse else _demo_seed(out.parent / "connect-seed-0", 0, force, device)
    b = _demo_seed(out.parent / "connect-seed-1", 1, force, device)
    connect_command(
        str(a),
        str(b),
        model=DEMO_MODEL,
        data="digits",
        out=out,
        force=force,
        device=device,
        align="weight",
        points=25,
        json_out=True,
    )
