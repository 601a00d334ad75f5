"""Connectivity: paths between solutions, barriers, permutation alignment with a function check.

Two networks trained from different seeds look far apart, but hidden units can be
permuted without changing the function, so every solution has countless copies. Once B
is permuted to match A, the loss along the straight line between them often stays low
(linear mode connectivity; Entezari et al. 2022, Ainsworth et al. 2023).

>>> import losslab
>>> from losslab.connectivity import connect
>>> data = losslab.load_data("digits")
>>> model = losslab.build_model("mlp:64-32-10", seed=0)
>>> objective = losslab.Objective(model, "cross_entropy", data)
>>> a = losslab.train(objective, losslab.TrainConfig(epochs=2)).theta
>>> b_init = objective.as_theta(losslab.build_model("mlp:64-32-10", seed=1))
>>> b = losslab.train(objective, losslab.TrainConfig(epochs=2, seed=1), theta=b_init).theta
>>> result = connect(objective, a, b, align="weight", points=5)
>>> result.alignment.max_output_change <= result.alignment.tolerance
True
"""

from losslab.connectivity.activation_matching import activation_matching, correlations
from losslab.connectivity.align import (
    ALIGN_METHODS,
    Alignment,
    align,
    check_function,
    permute_network,
    resolve_spec,
)
from losslab.connectivity.barriers import DEFINITIONS, Barrier, barrier, barriers
from losslab.connectivity.batchnorm import interpolate_buffers, reestimate_batch_norm
from losslab.connectivity.connect import ConnectConfig, ConnectResult, connect, run
from losslab.connectivity.connect import estimate as estimate_connect
from losslab.connectivity.evaluation import CURVES, PathEvaluation, evaluate_path
from losslab.connectivity.graph import TracedNetwork, derive_spec
from losslab.connectivity.network import Network, as_network, has_batch_norm
from losslab.connectivity.paths import CURVE_CONFIG, PATH_KINDS, CurveFit, Path, fit_curve
from losslab.connectivity.permutation_spec import Axis, PermutationSpec, permute_axis
from losslab.connectivity.repair import Repair
from losslab.connectivity.weight_matching import Matching, weight_matching

__all__ = [
    "ALIGN_METHODS",
    "CURVES",
    "CURVE_CONFIG",
    "DEFINITIONS",
    "PATH_KINDS",
    "Alignment",
    "Axis",
    "Barrier",
    "ConnectConfig",
    "ConnectResult",
    "CurveFit",
    "Matching",
    "Network",
    "Path",
    "PathEvaluation",
    "PermutationSpec",
    "Repair",
    "TracedNetwork",
    "activation_matching",
    "align",
    "as_network",
    "barrier",
    "barriers",
    "check_function",
    "connect",
    "correlations",
    "derive_spec",
    "evaluate_path",
    "fit_curve",
    "has_batch_norm",
    "interpolate_buffers",
    "permute_axis",
    "permute_network",
    "estimate_connect",
    "reestimate_batch_norm",
    "resolve_spec",
    "run",
    "weight_matching",
]
