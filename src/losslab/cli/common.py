"""What every command shares: options, building the objective, the run directory, output.

A command is a typed function decorated with `command`; it builds its inputs with
`Setup`, opens its run with `open_run`, and ends with `finish`. Errors follow one
rule: a `UserError` prints one line and exits 2 (nothing half-written stays); anything
else prints one line, marks run.json 'failed' and exits 1. ``LOSSLAB_DEBUG=1`` shows
the traceback instead.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from losslab._loading import absolute_spec, check_user_file
from losslab.data import Dataset, load_data
from losslab.errors import UserError, check_int
from losslab.models import build_model, load_checkpoint
from losslab.objective import Objective, resolve_device, resolve_dtype
from losslab.objective.cost import Estimate
from losslab.objective.modes import eval_changes
from losslab.parallel import Executor, LocalExecutor, cluster_workers, get_executor
from losslab.store import RunDir, load
from losslab.store.run import Run

try:  # newer typer carries its own copy of click; older typer re-exports click's exceptions
    from typer import TyperException as _FrameworkError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException as _FrameworkError

# Exceptions typer itself turns into exit codes and messages; `command` lets them through.
_FRAMEWORK_EXCEPTIONS = (typer.Exit, typer.Abort, _FrameworkError)

__all__ = [
    "EstimateOpt",
    "Options",
    "Setup",
    "command",
    "cluster_executor",
    "config_from",
    "default_model",
    "emit",
    "emit_estimate",
    "finish",
    "open_run",
    "progress_bar",
    "quiet",
    "ray_default",
    "resolve_ray",
    "shared_options",
    "stderr",
    "stdout",
]

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")

# ------------------------------------------------------------------------ options
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Zoo spec (mlp:64-100-100-10, cnn1d, deep:8,width=64,residual=1) or path/to/file.py:function. "
        "Default: an MLP sized for --data.",
    ),
]
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="digits, mnist1d, teacher, spirals, xor (with key=value options, e.g. digits:label_noise=0.2) "
        "or path/to/file.py:function.",
    ),
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option("--checkpoint", help="A state_dict file, or a train run directory (its model.pt, model and data)."),
]
LossOpt = Annotated[
    str | None,
    typer.Option("--loss", help="cross_entropy | mse | bce. Default: cross_entropy for class labels, mse otherwise."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32 or float64.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the model's initialization and of every random choice.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Run directory to write (default runs/<command>-<time>).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite a complete run in --out.")]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the run's result as one JSON object on stdout (everything else goes to stderr)."
    ),
]
LabelNoiseOpt = Annotated[
    float | None, typer.Option("--label-noise", help="Fraction of training labels replaced by random labels (0 … 1).")
]
EstimateOpt = Annotated[
    bool,
    typer.Option(
        "--estimate",
        help="Time the unit of work here, print the work and the predicted time, and exit; writes nothing.",
    ),
]
# Options of the commands that train (train, instability, exact relu2).
OptimizerOpt = Annotated[str, typer.Option("--optimizer", help="gd | sgd | momentum | adam.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Learning rate.")]
MomentumOpt = Annotated[float, typer.Option("--momentum", help="Momentum (optimizer momentum).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Rows per step; 0 = full batch.")]
StepBudgetOpt = Annotated[int | None, typer.Option("--steps", help="Step budget (overrides --epochs).")]
RowsOpt = Annotated[
    int | None,
    typer.Option(
        "--rows",
        help="Analyse a seeded subsample of N training rows (a block of one permutation of --seed) "
        "instead of all of them.",
    ),
]
RayOpt = Annotated[
    str | None, typer.Option("--ray", help="Run independent pieces on Ray: 'local' or a cluster ADDRESS.")
]


def command(fn: F) -> F:
    """Turn exceptions into the documented exit codes (2 user error, 1 internal failure)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except UserError as exc:
            if os.environ.get("LOSSLAB_DEBUG"):
                raise
            stderr.print(f"losslab: error: {exc}", markup=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            stderr.print("losslab: interrupted; rerun the same command to resume.", markup=False)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("LOSSLAB_DEBUG"):
                raise
            stderr.print(
                f"losslab: internal error: {type(exc).__name__}: {exc} (set LOSSLAB_DEBUG=1 for the traceback)",
                markup=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# The options most commands share, in the order --help lists them, with their defaults.
_SHARED: dict[str, tuple[Any, Any]] = {
    "model": (ModelOpt, None),
    "data": (DataOpt, "digits"),
    "checkpoint": (CheckpointOpt, None),
    "loss": (LossOpt, None),
    "device": (DeviceOpt, "cpu"),
    "dtype": (DtypeOpt, "float32"),
    "seed": (SeedOpt, 0),
    "out": (OutOpt, None),
    "force": (ForceOpt, False),
    "json_out": (JsonOpt, False),
    "label_noise": (LabelNoiseOpt, None),
    "rows": (RowsOpt, None),
    "ray": (RayOpt, None),
    "estimate": (EstimateOpt, False),
}
_OPTIONAL = ("rows", "ray", "estimate")  # only where a command names them


@dataclass
class Options:
    """The shared options of one command call (`shared_options`), and what they build."""

    model: str | None = None
    data: str | None = "digits"
    checkpoint: str | None = None
    loss: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    out: Path | None = None
    force: bool = False
    json_out: bool = False
    label_noise: float | None = None
    rows: int | None = None
    ray: str | None = None
    estimate: bool = False

    def setup(self, **changes: Any) -> Setup:
        """The command's `Setup` from these options; ``changes`` replace some (``checkpoint=``)."""
        inputs = {
            "model": self.model,
            "data": self.data,
            "checkpoint": self.checkpoint,
            "loss": self.loss,
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
            "label_noise": self.label_noise,
            "rows": self.rows,
        }
        return Setup(**{**inputs, **changes})

    def run_options(self) -> dict[str, Any]:
        """The options that say where and how a run runs, not what it computes (`execute_study`'s)."""
        names = ("device", "dtype", "ray", "out", "force", "json_out", "estimate")
        return {name: getattr(self, name) for name in names}

    @functools.cached_property
    def executor(self) -> Executor | None:
        """Where the command's independent pieces run: None (this process) without --ray."""
        return cluster_executor(resolve_ray(self.ray), self.device)

    def open_run(
        self, command_name: str, config: dict[str, Any], seeds: dict[str, Any] | None = None, analysis: Any = None
    ) -> Any:
        """`open_run` into --out (or the default), honouring --force, on this device and dtype."""
        where = {"force": self.force, "device": self.device, "dtype": self.dtype, "executor": self.executor}
        return open_run(command_name, self.out, config=config, seeds=seeds, analysis=analysis, **where)

    def progress(self, description: str) -> Any:
        """A progress bar, silent under --json."""
        return progress_bar(description, not self.json_out)

    def finish(self, run: RunDir, results: dict[str, Any], summary: dict[str, Any], title: str) -> Run:
        """`finish` with --json."""
        return finish(run, results, summary, json_out=self.json_out, title=title)


def shared_options(*optional: str, without: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give a command the shared options (``--model`` … ``--label-noise``) without declaring each one.

    The command declares one parameter ``opts: Options`` where the options belong in its
    signature and --help (after parameters with defaults: ``*, opts: Options``); the wrapper's
    signature carries them in its place, so typer and direct calls
    (``hessian_command(checkpoint=..., json_out=True)``) both see them, and the command
    receives them as one `Options`. ``optional`` adds ``ray``/``estimate`` (``--estimate``
    comes last); ``without`` drops some. An option the command declares itself (its own
    help or default) takes the shared one's place; its value goes to the command and into ``opts``.
    """
    unknown = [name for name in (*optional, *without) if name not in _SHARED]
    if unknown:
        raise ValueError(f"shared_options: unknown options {unknown}")
    chosen = [n for n in _SHARED if n not in without and (n not in _OPTIONAL or n in optional)]

    def decorate(fn: F) -> F:
        own = inspect.signature(fn, eval_str=True)
        if "opts" not in own.parameters:
            raise TypeError(f"{fn.__name__} takes no 'opts' parameter for its shared options")
        params: list[inspect.Parameter] = []
        for param in own.parameters.values():
            if param.name in chosen:  # the command's own version, listed where the shared one stands
                continue
            if param.name != "opts":
                params.append(param)
                continue
            for name in chosen:
                if name in own.parameters:
                    params.append(own.parameters[name].replace(kind=param.kind))
                elif name != "estimate":
                    annotation, default = _SHARED[name]
                    params.append(inspect.Parameter(name, param.kind, default=default, annotation=annotation))
        if "estimate" in chosen and "estimate" not in own.parameters:  # last in --help, after the command's own
            annotation, default = _SHARED["estimate"]
            params.append(
                inspect.Parameter("estimate", inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            )
        signature = own.replace(parameters=params)
        in_opts = [name for name in _SHARED if name in signature.parameters]
        passed_on = [name for name in in_opts if name in own.parameters]  # the command's own options

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            opts = Options(**{name: values[name] for name in in_opts})
            for name in in_opts:
                if name not in passed_on:
                    del values[name]
            return fn(**values, opts=opts)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate


def config_from(kind: type[C], values: dict[str, Any], **given: Any) -> C:
    """The config dataclass ``kind`` of a command's parameters.

    Each field takes the value of the same name in ``values`` (the command's ``locals()``),
    unless ``given`` names it (an option spelled or parsed differently, or one in `Options`).
    """
    fields = {field.name for field in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(given) - fields)
    if unknown:
        raise TypeError(f"{kind.__name__} has no fields {unknown}")
    return kind(**{**{name: values[name] for name in fields if name in values}, **given})


# ------------------------------------------------------------------------ inputs
def default_model(data: Dataset) -> str:
    """An MLP sized for the data: 100-100 hidden for digits and MNIST-1D, smaller for toy sets."""
    fan_in = 1
    for size in data.input_shape:
        fan_in *= size
    hidden = {"xor": "2", "spirals": "64-64", "teacher": "16"}.get(data.name, "100-100")
    return f"mlp:{fan_in}-{hidden}-{data.output_dim}" + (",act=tanh" if data.name == "xor" else "")


@dataclass
class Setup:
    """The common inputs of a command, resolved once: data, model, checkpoint, loss, device, dtype, seed."""

    model: str | None = None
    data: str = "digits"
    checkpoint: str | None = None
    loss: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    label_noise: float | None = None
    rows: int | None = None  # a seeded subsample of this many training rows (`Objective.subsample`)

    def __post_init__(self) -> None:
        if self.rows is not None:
            check_int(self.rows, "rows", "the command line (--rows)", low=1)
        resolve_dtype(self.dtype)
        resolve_device(self.device)
        self._dataset: Dataset | None = None
        self._objective_record: dict[str, Any] = {}
        self.files: dict[str, dict[str, str]] = {}  # user model/data files: absolute path and SHA-256
        if self.checkpoint is not None and Path(self.checkpoint).is_dir():
            self._from_run(Path(self.checkpoint))
        elif self.checkpoint is not None and Path(self.checkpoint).is_file():
            self.checkpoint = str(Path(self.checkpoint).resolve())
        # Absolute paths, so that a run rebuilds from any working directory (`_from_run`).
        for what in ("model", "data"):
            spec = getattr(self, what)
            if spec is not None and what not in self.files:
                spec, info = absolute_spec(spec, what)
                setattr(self, what, spec)
                if info is not None:
                    self.files[what] = info

    def _from_run(self, path: Path) -> None:
        run = load(path)
        config = run.manifest.get("config", {})
        if not (path / "model.pt").is_file():
            raise UserError(f"The run {str(path)!r} has no model.pt: give a train run directory or a .pt file.")
        self.checkpoint = str((path / "model.pt").resolve())
        files = config.get("files") or {}
        if self.model is None and config.get("model"):
            self.model = config["model"]
            if "model" in files:
                check_user_file(files["model"], str(path))
                self.files["model"] = files["model"]
        if self.data == "digits" and config.get("data"):
            self.data = config["data"]
            if "data" in files:
                check_user_file(files["data"], str(path))
                self.files["data"] = files["data"]
        self.loss = self.loss or config.get("loss")

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_data(self.data, label_noise=self.label_noise)
        return self._dataset

    @property
    def model_spec(self) -> str:
        return self.model or default_model(self.dataset)

    @property
    def loss_name(self) -> str:
        if self.loss:
            return self.loss
        return "cross_entropy" if self.dataset.task == "classification" else "mse"

    def build_model(self, seed: int | None = None, checkpoint: str | None = None) -> Any:
        model = build_model(self.model_spec, seed=self.seed if seed is None else seed)
        path = checkpoint or self.checkpoint
        if path is not None:
            load_checkpoint(model, path)
        return model

    def objective(self, model: Any = None, *, split: str = "train", **kwargs: Any) -> Objective:
        """The objective of this setup; `config` then records its mode and which parameters θ holds."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            objective = Objective(
                self.build_model() if model is None else model,
                self.loss_name,
                self.dataset,
                split=split,
                dtype=self.dtype,
                device=self.device,
                **kwargs,
            )
            if self.rows is not None and split == "train":
                objective = objective.subsample(self.rows, seed=self.seed)
        for warning in caught:  # one line each on the command line, not Python's file:line form
            stderr.print(f"losslab: warning: {warning.message}", markup=False)
        self._objective_record = {
            "mode": objective.mode,
            "eval_changes": eval_changes(objective.model),
            "params": objective.params_summary,
        }
        return objective

    def config(self) -> dict[str, Any]:
        """What a run records of its inputs: specs (user files by absolute path and SHA-256), the mode
        the model is evaluated in and what eval mode changed, and which parameters θ holds.

        Those last three are read off the objective, so one is built here when the command has not
        built its own yet (the runners of surface and hessian build theirs where their work starts).
        """
        if not self._objective_record:
            self.objective()
        return {
            "model": self.model_spec,
            "data": self.data,
            "label_noise": self.label_noise,
            **({"rows": self.rows} if self.rows is not None else {}),
            "checkpoint": self.checkpoint,
            "loss": self.loss_name,
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
            **({"files": dict(self.files)} if self.files else {}),
            **self._objective_record,
        }


# ------------------------------------------------------------------------ runs
def default_out(command_name: str) -> Path:
    return Path("runs") / f"{command_name.replace(' ', '-')}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@contextmanager
def open_run(
    command_name: str,
    out: Path | None,
    *,
    config: dict[str, Any],
    force: bool,
    seeds: dict[str, Any] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    analysis: Any = None,
    executor: Executor | None = None,
) -> Iterator[RunDir]:
    """A run directory for the body of a command; cleans up after user errors, records failures.

    ``analysis`` is the command's config dataclass: run.json keeps it whole, and
    ``losslab.load(run).config`` rebuilds it. ``executor`` (None: this process) is
    recorded as run.json's ``executor`` (kind, address, workers).
    """
    run = RunDir.create(
        out or default_out(command_name),
        command=command_name,
        config=config,
        force=force,
        argv=["losslab", *sys.argv[1:]],
        seeds=seeds,
        device=device,
        dtype=dtype,
        analysis=analysis,
        executor=(executor or LocalExecutor()).describe(),
    )
    try:
        yield run
    except UserError as exc:
        run.discard(f"UserError: {exc}")  # finished chunks stay: the same command resumes from them
        raise
    except BaseException as exc:
        run.fail(f"{type(exc).__name__}: {exc}")
        raise


def finish(run: RunDir, results: dict[str, Any], summary: dict[str, Any], *, json_out: bool, title: str) -> Run:
    """Save results, draw figures, write report.html, mark the run complete and print the summary."""
    from losslab.report import Section, write_report

    for name, result in results.items():
        run.save_result(name, result)
    run.manifest["result"] = summary
    run.manifest["status"] = "complete"  # the report shows the state it is written in, with its wall time
    run.stop_clock()
    write_report(run.path / "report.html", title, [Section(title, run.manifest, results)], run.path / "figures")
    run.complete(summary)
    emit(run.path, run.manifest, json_out)
    return load(run.path)


_QUIET: list[bool] = [False]
_RAY: list[str | None] = [None]


@contextmanager
def ray_default(ray: str | None) -> Iterator[None]:
    """Commands called inside run their pieces on ``ray`` unless given their own --ray (the demo's --ray)."""
    _RAY.append(ray)
    try:
        yield
    finally:
        _RAY.pop()


def cluster_executor(ray: str | None, device: str) -> Executor | None:
    """The executor for --ray (None without it), refused beside --device cuda.

    Ray's tasks here ask for CPUs only, and Ray hides the GPUs from such tasks, so a piece built
    for CUDA could not run (or unpickle its CUDA tensors) on a worker.
    """
    if not ray:
        return None
    if str(device).startswith("cuda"):
        raise UserError("--ray runs pieces on CPU workers: drop --ray to use the GPU, or pass --device cpu with --ray.")
    return get_executor(ray)


def resolve_ray(ray: str | None) -> str | None:
    """A command's --ray, or the one `ray_default` set around it."""
    return ray or _RAY[-1]


@contextmanager
def quiet() -> Iterator[None]:
    """Silence `emit` (the demo runs commands and prints only its own summary)."""
    _QUIET.append(True)
    try:
        yield
    finally:
        _QUIET.pop()


def emit(path: Path, manifest: dict[str, Any], json_out: bool) -> None:
    """One JSON object on stdout (--json), or a readable table."""
    if _QUIET[-1]:
        return
    if json_out:
        payload = {
            "run": str(path),
            "command": manifest.get("command"),
            "status": manifest.get("status"),
            "result": manifest.get("result"),
            "mode": (manifest.get("config") or {}).get("mode"),  # the mode the model was evaluated in
        }
        sys.stdout.write(json.dumps(payload, default=str, allow_nan=True) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=f"{manifest.get('command')} → {path}", show_header=False)
    for key, value in _rows(manifest.get("result") or {}):
        table.add_row(key, value)
    stdout.print(table)
    stdout.print(f"report: {path / 'report.html'}", markup=False)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def emit_estimate(estimate: Estimate, json_out: bool, ray: str | None = None) -> None:
    """The work a command would do and its predicted time: one JSON object (--json) or a table.

    With ``ray`` the times are also divided by the cluster's workers (a best case).
    """
    if ray:
        estimate = estimate.on_workers(cluster_workers(ray))
    if json_out:
        sys.stdout.write(json.dumps({"estimate": estimate.to_dict()}) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=f"losslab {estimate.command}: estimate (nothing was run or written)")
    for column in ("work", "count", "per unit", "time"):
        table.add_column(column, justify="left" if column == "work" else "right")
    for w in estimate.work:
        count = f"{w.count:,}" if w.count is not None else f"≤ {w.bound:,}"
        seconds = w.seconds if w.seconds is not None else w.bound_seconds
        time_text = _duration(seconds) if w.count is not None else f"≤ {_duration(seconds)}"
        table.add_row(w.what, count, f"{w.unit_seconds * 1e3:.3g} ms", time_text)
    stdout.print(table)
    known, bound = estimate.seconds, estimate.bound_seconds
    if known == 0:
        stdout.print(f"predicted: at most {_duration(bound)}; every count depends on a stopping rule", markup=False)
    elif bound > known * (1 + 1e-9):
        stdout.print(
            f"predicted: {_duration(known)} of fixed work; at most {_duration(bound)} "
            "if every stopping rule runs to its budget",
            markup=False,
        )
    else:
        stdout.print(f"predicted: {_duration(known)}", markup=False)
    if estimate.workers > 1:
        stdout.print(
            f"on {estimate.workers} Ray workers: at best {_duration(known / estimate.workers)}"
            + (f" (at most {_duration(bound / estimate.workers)})" if bound > known * (1 + 1e-9) else "")
            + ", if the pieces split evenly; Ray adds a few seconds to start",
            markup=False,
        )
    for note in estimate.notes:
        stdout.print(note, markup=False)


def _rows(summary: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in summary.items():
        if isinstance(value, dict):
            yield from _rows(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", f"{value:.6g}" if isinstance(value, float) else str(value)


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
