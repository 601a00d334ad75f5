"""Curvature of the loss at θ: the Hessian (or GGN) as an operator, and what it says.

Extreme eigenpairs with residual certificates (`lanczos`, `extreme_eigenpairs`), trace
estimates with error bars (`hutchinson`, `hutchpp`, `xtrace`, and `auto_trace` choosing), the spectral density by
stochastic Lanczos quadrature (`slq`), the saddle index (`saddle_index`), sharpness
measures (`sharpness` and its parts), per-layer curvature (`per_layer`) and λmax along
training (`SharpnessTracker`). Every estimator takes an `Operator` or a dense
symmetric tensor. ``run(setup_or_objective, HessianConfig(...))`` is ``losslab hessian``.
"""

from losslab.curvature.density import SpectralDensity, slq
from losslab.curvature.lanczos import Eigenpairs, extreme_eigenpairs, lanczos
from losslab.curvature.operators import (
    MATRICES,
    DenseOperator,
    Operator,
    as_operator,
    ggn_operator,
    hessian_operator,
    matrix_operator,
)
from losslab.curvature.per_layer import LayerCurvature, per_layer
from losslab.curvature.run import HessianConfig, HessianResult, run
from losslab.curvature.saddle import SaddleIndex, saddle_index
from losslab.curvature.sharpness import (
    AverageSharpness,
    Sharpness,
    WorstCaseSharpness,
    adaptive_sharpness,
    average_sharpness,
    epsilon_sharpness,
    sharpness,
)
from losslab.curvature.trace import TraceEstimate, auto_trace, hutchinson, hutchpp, xtrace
from losslab.curvature.tracking import SharpnessTrack, SharpnessTracker

__all__ = [
    "MATRICES",
    "AverageSharpness",
    "DenseOperator",
    "Eigenpairs",
    "HessianConfig",
    "HessianResult",
    "LayerCurvature",
    "Operator",
    "SaddleIndex",
    "Sharpness",
    "SharpnessTrack",
    "SharpnessTracker",
    "SpectralDensity",
    "TraceEstimate",
    "WorstCaseSharpness",
    "adaptive_sharpness",
    "as_operator",
    "auto_trace",
    "average_sharpness",
    "epsilon_sharpness",
    "extreme_eigenpairs",
    "ggn_operator",
    "hessian_operator",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "matrix_operator",
    "per_layer",
    "run",
    "saddle_index",
    "sharpness",
    "slq",
    "xtrace",
]
