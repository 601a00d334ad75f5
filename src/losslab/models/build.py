"""Build models from zoo specs or user code; load and save checkpoints."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from losslab._io import atomic_write
from losslab._loading import is_user_spec, load_callable, parse_spec
from losslab.errors import UserError
from losslab.models.zoo import ZOO

__all__ = ["build_model", "load_checkpoint", "save_checkpoint"]


def build_model(spec: str | nn.Module, *, seed: int = 0) -> nn.Module:
    """A freshly initialized model from a spec, in eval mode; the same seed gives the same weights.

    Eval mode is the mode every analysis evaluates in (dropout off, batch norm on its
    running statistics); `losslab.train` runs its steps in train mode regardless.

    Zoo specs: ``mlp:64-100-100-10,act=tanh``, ``cnn1d``, ``deep:8,width=64,residual=1``
    (``losslab.models.ZOO`` lists them all). User models: ``path/to/file.py:function`` or
    ``package.module:function`` returning an ``nn.Module``; the function is called with
    the global torch generator seeded to ``seed`` (and restored afterwards). An exception
    the user's function raises is a `UserError` naming the function and the exception.
    """
    if isinstance(spec, nn.Module):
        return spec
    name, positional, options = parse_spec(spec, "model")
    if name in ZOO:
        builder = lambda: ZOO[name][0](positional, options, spec)  # noqa: E731
    elif is_user_spec(spec):
        fn = load_callable(spec, "model")
        builder = fn
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
    A checkpoint of another architecture fails with the keys or shapes that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The checkpoint {str(path)!r} does not exist: check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-tensor objects
        raise UserError(
            f"The checkpoint {str(path)!r} cannot be read as a weights-only state_dict ({exc}). "
            "Save it with torch.save(model.state_dict(), path)."
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


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``model.state_dict()`` atomically (loadable with ``weights_only=True``)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _few(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
