"""The classic claims about training as rerunnable experiments, one module per study."""

from losslab.studies import double_descent as _double_descent  # noqa: F401  (registers)
from losslab.studies.base import STUDIES, Study, StudyContext, register_study, subset
from losslab.studies.double_descent import DoubleDescentConfig, DoubleDescentResult, double_descent

__all__ = [
    "STUDIES",
    "DoubleDescentConfig",
    "DoubleDescentResult",
    "Study",
    "StudyContext",
    "double_descent",
    "register_study",
    "subset",
]
