"""``losslab study``: the classic claims about training as rerunnable experiments."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from losslab.cli.app import App, app
from losslab.cli.common import (
    DataOpt,
    DeviceOpt,
    DtypeOpt,
    EstimateOpt,
    ForceOpt,
    JsonOpt,
    ModelOpt,
    OutOpt,
    RayOpt,
    SeedOpt,
    cluster_executor,
    command,
    emit_estimate,
    finish,
    open_run,
    progress_bar,
    resolve_ray,
    stdout,
)
from losslab.cli.demo import demo_step
from losslab.errors import UserError
from losslab.studies import STUDIES, StudyContext

__all__ = ["execute_study", "run_study", "study_app"]

study_app = App(help="Rerun the classic experiments about training.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(study_app, name="study")


@study_app.command("list")
@command
def list_studies(json_out: JsonOpt = False) -> None:
    """Each study in one line."""
    if json_out:
        sys.stdout.write(json.dumps({name: s.description for name, s in STUDIES.items()}) + "\n")
        return
    for name, study in STUDIES.items():
        stdout.print(f"{name:>16}  {study.description}", markup=False)


def _convert(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin in (tuple, list):
        return tuple(_convert(part, args[0], key) for part in text.split(",") if part)
    if origin is typing.Union or (args and origin is not None):
        if text.lower() == "none":
            return None
        return _convert(text, args[0], key)
    try:
        if kind is bool:
            return text.lower() in ("1", "true", "yes")
        return kind(text)
    except (TypeError, ValueError):
        raise UserError(
            f"The study setting {key!r} must be a {getattr(kind, '__name__', kind)}. Got {text!r}."
        ) from None


def _overrides(config_type: type, settings: list[str]) -> dict[str, Any]:
    hints = typing.get_type_hints(config_type)
    out: dict[str, Any] = {}
    for item in settings:
        if "=" not in item:
            raise UserError(f"--set takes KEY=VALUE (e.g. --set widths=4,8,16). Got {item!r}.")
        key, value = item.split("=", 1)
        if key not in hints:
            names = ", ".join(f.name for f in dataclasses.fields(config_type))
            raise UserError(f"The study has no setting {key!r}: known settings are {names}.")
        out[key] = _convert(value, hints[key], key)
    return out


def run_study(
    name: str,
    *,
    quick: bool = False,
    model: str | None = None,
    data: str | None = None,
    seed: int | None = None,
    settings: list[str] | None = None,
    **options: Any,
) -> None:
    """Run one registered study into a run directory (the body of every ``losslab study NAME``).

    ``quick`` picks the preset, ``model``/``data``/``seed``/``settings`` override it;
    ``options`` go to `execute_study` (device, dtype, ray, out, force, json_out, estimate).
    """
    study = STUDIES[name]
    fields = {f.name for f in dataclasses.fields(study.config_type)}
    overrides = _overrides(study.config_type, settings or [])
    for key, value in (("model", model), ("data", data), ("seed", seed)):
        if value is not None:
            if key not in fields:
                raise UserError(f"The study {name!r} takes no --{key}: its settings are {', '.join(sorted(fields))}.")
            overrides[key] = value
    preset = "quick" if quick else "full"
    config = study.config(preset, **overrides)
    execute_study(name, config, preset=preset, **options)


def execute_study(
    name: str,
    config: Any,
    *,
    preset: str | None = None,
    command_name: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    ray: str | None = None,
    out: Path | None = None,
    force: bool = False,
    json_out: bool = False,
    estimate: bool = False,
    title: str | None = None,
) -> None:
    """Run the study ``name`` with a built ``config``: the estimate, or run directory → runner → print."""
    study = STUDIES[name]
    ray = resolve_ray(ray)
    if estimate:
        if study.estimate is None:
            raise UserError(
                f"The study {name!r} has no cost estimate yet: time its quick preset (--quick, about a minute) instead."
            )
        emit_estimate(study.estimate(config, StudyContext(device=device, dtype=dtype)), json_out, ray)
        return
    run_config = {
        "study": name,
        "preset": preset,
        "settings": dataclasses.asdict(config),
        "device": device,
        "dtype": dtype,
    }
    executor = cluster_executor(ray, device)
    command_name = command_name or f"study {name}"
    seeds = {"seed": getattr(config, "seed", None)}
    where = {"device": device, "dtype": dtype, "executor": executor}
    with open_run(command_name, out, config=run_config, force=force, seeds=seeds, analysis=config, **where) as run:
        with progress_bar(name, not json_out) as update:
            context = StudyContext(
                directory=run.path / "chunks",
                executor=executor,
                progress=update,
                device=device,
                dtype=dtype,
            )
            result = study.run(config, context)
        finish(run, {"study": result}, result.summary(), json_out=json_out, title=title or command_name)


def _make_command(name: str) -> None:
    def study_command(
        quick: Annotated[bool, typer.Option("--quick", help="The quick preset (about a minute on 2 cores).")] = False,
        model: ModelOpt = None,
        data: Annotated[str | None, typer.Option("--data", help=DataOpt.__metadata__[0].help)] = None,
        seed: Annotated[int | None, typer.Option("--seed", help=SeedOpt.__metadata__[0].help)] = None,
        setting: Annotated[
            list[str] | None, typer.Option("--set", help="Override a study setting: KEY=VALUE (lists comma-separated).")
        ] = None,
        device: DeviceOpt = "cpu",
        dtype: DtypeOpt = "float32",
        ray: RayOpt = None,
        out: OutOpt = None,
        force: ForceOpt = False,
        json_out: JsonOpt = False,
        estimate: EstimateOpt = False,
    ) -> None:
        run_study(
            name,
            quick=quick,
            model=model,
            data=data,
            seed=seed,
            settings=setting,
            device=device,
            dtype=dtype,
            ray=ray,
            out=out,
            force=force,
            json_out=json_out,
            estimate=estimate,
        )

    study_command.__doc__ = STUDIES[name].description
    study_app.command(name)(command(study_command))


for _name in STUDIES:
    _make_command(_name)


def _add_demo(name: str, title: str) -> None:
    """The demo runs a study at its quick preset."""

    def step(out: Path, force: bool, device: str) -> None:
        run_study(name, quick=True, device=device, out=out, force=force, json_out=True)

    demo_step(f"study-{name}", title)(step)


for _name, _study in STUDIES.items():
    if _study.demo is not None:
        _add_demo(_name, _study.demo)
