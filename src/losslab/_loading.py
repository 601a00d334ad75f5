"""Load user code given as ``path/to/file.py:function`` or ``package.module:function``."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from losslab.errors import UserError

__all__ = [
    "absolute_spec",
    "check_user_file",
    "file_sha256",
    "is_user_spec",
    "load_callable",
    "option",
    "parse_spec",
    "reject_unknown",
    "split_call",
]


def is_user_spec(spec: str) -> bool:
    """True for ``file.py:fn`` and ``pkg.mod:fn`` (callers check their built-in names first)."""
    if ":" not in spec:
        return False
    head, name = spec.rsplit(":", 1)
    if not name.isidentifier():
        return False
    return head.endswith(".py") or "/" in head or all(part.isidentifier() for part in head.split("."))


def split_call(spec: str, what: str) -> tuple[str, dict[str, Any]]:
    """``pkg.mod:fn,key=value,...`` → (``pkg.mod:fn``, keyword arguments for ``fn``).

    Values are Python literals where they parse as one (``10``, ``0.5``, ``True``, ``None``,
    ``'a'``) and strings otherwise, so ``torchvision.models:resnet18,num_classes=10`` calls
    ``resnet18(num_classes=10)``. A spec without options comes back unchanged.
    """
    head, sep, tail = spec.rpartition(":")
    if not sep or "," not in tail:
        return spec, {}
    name, *parts = (p.strip() for p in tail.split(","))
    options: dict[str, Any] = {}
    for part in filter(None, parts):
        key, eq, text = (x.strip() for x in part.partition("="))
        if not eq or not key.isidentifier():
            raise UserError(
                f"The option {part!r} of the {what} spec {spec!r} must be written key=value "
                f"(a keyword argument of {name!r})."
            )
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return f"{head}:{name}", options


def _is_file_spec(spec: str) -> bool:
    where = spec.rsplit(":", 1)[0]
    return where.endswith(".py") or "/" in where


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def absolute_spec(spec: str, what: str) -> tuple[str, dict[str, str] | None]:
    """``path/to/file.py:fn`` with the file's absolute path, and ``{'path', 'sha256'}`` of that file.

    A run directory stores both, so it rebuilds its model and data from any working
    directory and can tell when the file changed since. Other specs come back as given.
    """
    call, options = split_call(spec, what)
    if not is_user_spec(call) or not _is_file_spec(call):
        return spec, None
    where, name = call.rsplit(":", 1)
    path = Path(where).expanduser()
    if not path.is_file():
        return spec, None  # load_callable names the missing file
    path = path.resolve()
    rest = spec[len(call) :] if options else ""  # the options as written
    return f"{path}:{name}{rest}", {"path": str(path), "sha256": file_sha256(path), "what": what}


def check_user_file(info: dict[str, Any], run: str) -> None:
    """Fail when the file a run was built from moved or changed since (its recorded SHA-256)."""
    path, what = Path(str(info.get("path"))), info.get("what", "model")
    if not path.is_file():
        raise UserError(
            f"The {what} file {str(path)!r} that the run {run!r} was built from no longer exists: "
            f"restore it there or pass --{what} path/to/file.py:function."
        )
    if info.get("sha256") and file_sha256(path) != info["sha256"]:
        raise UserError(
            f"The {what} file {str(path)!r} changed since the run {run!r} was made (its SHA-256 differs): "
            f"restore that version or pass --{what} {path}:function to use the file as it is now."
        )


def _guarded(fn: Callable[..., Any], spec: str, what: str) -> Callable[..., Any]:
    """``fn`` whose exceptions become a `UserError` naming the user function and what it raised."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())[:200]  # one line, however the message was wrapped
            raise UserError(
                f"The {what} function {spec!r} raised {type(exc).__name__}{': ' + text if text else ''}. "
                "Fix that function (LOSSLAB_DEBUG=1 shows the traceback)."
            ) from exc

    return call


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """Import ``fn`` from ``path/to/file.py:fn`` or ``package.module:fn``.

    ``what`` names the thing being loaded ("data", "model") for the error messages. The
    function comes back wrapped: an exception it raises becomes a `UserError` that names
    the function and the exception (the user's code failed, not losslab).
    """
    if ":" not in spec:
        raise UserError(
            f"The {what} spec {spec!r} names no function: write 'path/to/file.py:function' "
            "or 'package.module:function'."
        )
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise UserError(f"The {what} file {where!r} does not exist: check the path in {spec!r}.")
        module_name = f"losslab_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UserError(f"The {what} file {where!r} is not a Python file: give a .py file.")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # the user's module failed on import: say where
            del sys.modules[module_name]
            raise UserError(
                f"Importing the {what} file {where!r} failed with {type(exc).__name__}: {exc}. Fix that file."
            ) from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UserError(
                f"The {what} module {where!r} cannot be imported ({exc}): install it or give "
                "'path/to/file.py:function' instead."
            ) from exc
        except Exception as exc:  # installed but broken: e.g. a CUDA torchvision beside a CPU torch
            raise UserError(
                f"Importing the {what} module {where!r} failed with {type(exc).__name__}: {exc}. "
                f"Reinstall it for this torch ({torch.__version__})."
            ) from exc
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise UserError(f"{where!r} has no function {name!r}: check the name after ':' in {spec!r}.")
    return _guarded(fn, spec, what)


def parse_spec(spec: str, owner: str) -> tuple[str, str | None, dict[str, str]]:
    """Split ``name[:positional][,key=value...]`` into its parts.

    ``mlp:64-100-10,act=tanh`` gives ``("mlp", "64-100-10", {"act": "tanh"})`` and
    ``teacher:n=500,d=5`` gives ``("teacher", None, {"n": "500", "d": "5"})``.
    """
    name, _, rest = spec.partition(":")
    positional: str | None = None
    options: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in rest.split(",") if p.strip()):
        if "=" in part:
            key, value = part.split("=", 1)
            options[key.strip()] = value.strip()
        elif i == 0:
            positional = part
        else:
            raise UserError(f"The option {part!r} of {owner} {spec!r} must be written key=value.")
    return name.strip(), positional, options


def option(options: dict[str, str], key: str, default: Any, owner: str) -> Any:
    """Pop ``key`` from parsed options, converted to the type of ``default``."""
    if key not in options:
        return default
    text = options.pop(key)
    kind = type(default)
    try:
        if kind is bool:
            if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        return kind(text)
    except ValueError:
        raise UserError(f"The '{key}' option of {owner} must be a {kind.__name__}. Got {text!r}.") from None


def reject_unknown(options: dict[str, str], owner: str, known: list[str]) -> None:
    """Fail on options left after the known ones were popped."""
    if options:
        key = next(iter(options))
        raise UserError(f"{owner} has no option {key!r}: known options are {', '.join(known) or 'none'}.")
