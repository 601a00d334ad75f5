"""The classic claims about training as rerunnable experiments, one module per study.

Every module here registers its study on import (`register_study`); all are imported, so
a new study's file needs no line here to be listed, run, resumed and demoed.
"""

import importlib
import pkgutil

from losslab.studies.base import STUDIES, Study, StudyContext, register_study, subset
from losslab.studies.double_descent import DoubleDescentConfig, DoubleDescentResult, double_descent
from losslab.studies.gd_vs_sgd import GdVsSgdConfig, GdVsSgdResult, gd_vs_sgd
from losslab.studies.instability import InstabilityConfig, InstabilityResult, instability, measure_instability
from losslab.studies.random_labels import RandomLabelsConfig, RandomLabelsResult, random_labels
from losslab.studies.restarts import RestartsConfig, RestartsProblemResult, RestartsResult, restarts
from losslab.studies.saddles import SaddlesConfig, SaddlesResult, saddles
from losslab.studies.width_barriers import WidthBarriersConfig, WidthResult, width_barriers, width_study

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STUDIES",
    "DoubleDescentConfig",
    "DoubleDescentResult",
    "GdVsSgdConfig",
    "GdVsSgdResult",
    "InstabilityConfig",
    "InstabilityResult",
    "RandomLabelsConfig",
    "RandomLabelsResult",
    "RestartsConfig",
    "RestartsProblemResult",
    "RestartsResult",
    "SaddlesConfig",
    "SaddlesResult",
    "Study",
    "StudyContext",
    "WidthBarriersConfig",
    "WidthResult",
    "double_descent",
    "gd_vs_sgd",
    "instability",
    "measure_instability",
    "random_labels",
    "register_study",
    "restarts",
    "saddles",
    "subset",
    "width_barriers",
    "width_study",
]
