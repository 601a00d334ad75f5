"""Build models from zoo specs or user code; load and save checkpoints."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from losslab._io import atomic_write
from losslab._loading import is_user_spec, load_callable, parse_spec, split_call
from losslab._lockfile import run_status, unfinished_reason
from losslab.errors import UserError
from losslab.models.zoo import ZOO

__all__ = ["build_model", "load_checkpoint", "save_checkpoint"]


def build_model(spec: str | nn.Module, *, seed: int = 0) -> nn.Module:
    """A freshly initialized model from a spec, in eval mode; the same seed gives the same weights.

    Eval mode is the mode every analysis evaluates in (dropout off, batch norm on its
    running statistics); `losslab.train` runs its steps in train mode regardless.

    Zoo specs: ``mlp:64-100-100-10,act=tanh``, ``cnn1d``, ``deep:8,width=64,residual=1``
    (``losslab.models.ZOO`` lists them all). User models: ``path/to/file.py:function`` or
    ``package.module:function`` returning an ``nn.Module``, with keyword arguments after
    commas (``torchvision.models:resnet18,num_classes=10``; values are Python literals);
    the function is called with the global torch generator seeded to ``seed`` (and
    restored afterwards). An exception
    the user's function raises is a `UserError` naming the function and the exception.
    """
    if isinstance(spec, nn.Module):
        return spec
    name, positional, options = parse_spec(spec, "model")
    if name in ZOO:
        builder = lambda: ZOO[name][0](positional, options, spec)  # noqa: E731
    elif is_user_spec(split_call(spec, "model")[0]):
        call, kwargs = split_call(spec, "model")
        fn = load_callable(call, "model")
        builder = lambda: fn(**kwargs)  # noqa: E731
    else:
        known = ", ".join(example for _, example in ZOO.values())
        raise UserError(f"Unknown model {spec!r}: use a zoo spec ({known}) or 'path/to/file.py:function'.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder()
    if not isinstance(model, nn.Module):
        raise UserError(
            f"The model function {spec!r} returned {type(model).__name__}, not a torch.nn.Module: "
            "return the network itself."
        )
    return model.eval()


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a state_dict file into ``model`` (``torch.load(..., weights_only=True)``).

    Accepts a plain state_dict or a dict holding one under ``"state_dict"`` or ``"model"``.
    A checkpoint of another architecture fails with the keys or shapes that differ; a
    file holding other Python objects is refused (weights-only loading never runs code
    from the file, so it is safe for files of unknown origin); a checkpoint inside a run
    directory that did not finish is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The checkpoint {str(path)!r} does not exist: check the path.")
    _require_finished_run(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which runs the file's code: wrong for an unknown file.
        raise UserError(
            f"The checkpoint {str(path)!r} is not a plain state_dict of tensors (it holds other Python objects, "
            "which weights-only loading refuses): save only the weights with torch.save(model.state_dict(), path)."
        ) from None
    except Exception as exc:  # truncated files, files that are not torch checkpoints
        reason = " ".join(str(exc).split()).split(". ")[0]
        raise UserError(
            f"The checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {reason[:160]}); it may be truncated "
            "or not a torch file: save it again with torch.save(model.state_dict(), path)."
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"The checkpoint {str(path)!r} is not a state_dict of tensors: "
            "save it with torch.save(model.state_dict(), path)."
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise UserError(
            f"The checkpoint {str(path)!r} is for another architecture ({'; '.join(parts)}): "
            "pass the --model it was trained with."
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"The checkpoint {str(path)!r} is for another architecture: {key!r} has shape "
                f"{tuple(state[key].shape)} there but {tuple(value.shape)} in the model. "
                "Pass the --model it was trained with."
            )
    model.load_state_dict(state)
    return model


def _require_finished_run(path: Path) -> None:
    """Refuse a checkpoint that belongs to a losslab run which has not completed."""
    try:
        manifest = json.loads((path.parent / "run.json").read_text())
    except (OSError, ValueError):
        return  # no run, or a damaged one: the checkpoint file speaks for itself
    why = unfinished_reason(run_status(path.parent, manifest) if isinstance(manifest, dict) else None)
    if why is not None:
        raise UserError(
            f"The checkpoint {str(path)!r} belongs to a {manifest.get('command')} run that is not complete ({why}): "
            "rerun that command to finish it, or give a complete run."
        )


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``model.state_dict()`` atomically (loadable with ``weights_only=True``)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _few(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
