"""What every analysis config shares: it is recorded in run.json and read back from it."""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from typing import Any, TypeVar

__all__ = ["RecordedConfig", "config_record", "rebuild_config"]

C = TypeVar("C", bound="RecordedConfig")


class RecordedConfig:
    """Mixin of a config dataclass: `to_dict` gives JSON values, `from_dict` reads them back.

    The dataclass's ``__post_init__`` validates (and normalizes: lists back to tuples,
    dicts back to nested configs), so a config read back equals the one recorded.
    """

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values (what a run records)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """The config a run recorded; keys that are not the config's (a run's model, data, …) are skipped."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in values.items() if k in names})


def config_record(config: Any) -> dict[str, Any]:
    """What run.json keeps of an analysis config: its type (``module:qualname``) and its values."""
    kind = type(config)
    return {"type": f"{kind.__module__}:{kind.__qualname__}", "values": dataclasses.asdict(config)}


def rebuild_config(record: dict[str, Any]) -> Any:
    """The config dataclass `config_record` describes, equal to the one recorded.

    JSON has no tuples: a list goes back to a tuple where the field's type says tuple,
    and a dict to the nested config its field's type names. Only losslab's own configs
    are rebuilt (a run.json must not make this import arbitrary modules).

    >>> from losslab.train import TrainConfig
    >>> rebuild_config(config_record(TrainConfig(betas=(0.8, 0.9)))) == TrainConfig(betas=(0.8, 0.9))
    True
    """
    module, _, qualname = str(record["type"]).partition(":")
    if module.split(".")[0] != "losslab":
        raise ValueError(f"not a losslab config: {record['type']!r}")
    kind = importlib.import_module(module)
    for part in qualname.split("."):
        kind = getattr(kind, part)
    return _rebuild(kind, record["values"])


def _rebuild(kind: Any, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(kind)
    return kind(**{f.name: _value(hints[f.name], values[f.name]) for f in dataclasses.fields(kind) if f.name in values})


def _value(hint: Any, value: Any) -> Any:
    """``value`` (read from JSON) as the type ``hint`` says: tuples and nested dataclasses restored."""
    options = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _rebuild(option, value)
        if typing.get_origin(option) is tuple and isinstance(value, list):
            args = typing.get_args(option)
            inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
            return tuple(_value(inner, v) if inner is not None else v for v in value)
    return value
