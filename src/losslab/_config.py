"""What every analysis config shares: it is recorded in run.json and read back from it."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["RecordedConfig"]

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
