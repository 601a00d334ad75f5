"""The classic claims about training as rerunnable experiments, one module per study."""

from losslab.studies import double_descent as _double_descent  # noqa: F401  (registers)
from losslab.studies import gd_vs_sgd as _gd_vs_sgd  # noqa: F401
from losslab.studies import min_error as _min_error  # noqa: F401
from losslab.studies import random_labels as _random_labels  # noqa: F401
from losslab.studies import restarts as _restarts  # noqa: F401
from losslab.studies import saddles as _saddles  # noqa: F401
from losslab.studies.base import STUDIES, Study, StudyContext, register_study, subset
from losslab.studies.double_descent import DoubleDescentConfig, DoubleDescentResult, double_descent
from losslab.studies.gd_vs_sgd import GdVsSgdConfig, GdVsSgdResult, gd_vs_sgd
from losslab.studies.random_labels import RandomLabelsConfig, RandomLabelsResult, random_labels
from losslab.studies.restarts import RestartsConfig, RestartsProblemResult, RestartsResult, restarts
from losslab.studies.saddles import SaddlesConfig, SaddlesResult, saddles

__all__ = [
    "STUDIES",
    "DoubleDescentConfig",
    "DoubleDescentResult",
    "GdVsSgdConfig",
    "GdVsSgdResult",
    "RandomLabelsConfig",
    "RandomLabelsResult",
    "RestartsConfig",
    "RestartsProblemResult",
    "RestartsResult",
    "SaddlesConfig",
    "SaddlesResult",
    "Study",
    "StudyContext",
    "double_descent",
    "gd_vs_sgd",
    "random_labels",
    "register_study",
    "restarts",
    "saddles",
    "subset",
]
