"""Loss surfaces: directions, 1-D and 2-D slices, trajectory planes, monotonic interpolation.

``run(setup_or_objective, SurfaceConfig(...))`` is ``losslab surface`` and
``run(..., InterpolateConfig(...))`` is ``losslab interpolate``; the functions below
are their pieces.

>>> import torch
>>> from losslab import Objective
>>> from losslab.surface import axis, line
>>> X = torch.randn(30, 2, dtype=torch.float64)
>>> w = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
>>> obj = Objective(torch.nn.Linear(2, 1, bias=False), "mse", (X, X @ w.T), dtype="float64")
>>> d = w.reshape(-1) - obj.theta0   # toward the least-squares solution
>>> curve = line(obj, obj.theta0, d, axis(0.0, 1.0, 11))
>>> float(curve.loss[-1]) < 1e-20    # α = 1 lands on the solution, where ½‖Xw − y‖²/n = 0
True
"""

from losslab.surface.directions import (
    DIRECTION_KINDS,
    Directions,
    filter_normalize,
    gaussian,
    layer_normalize,
    make_directions,
    orthogonalize,
    pca_directions,
    random_directions,
)
from losslab.surface.interpolation import Interpolation, bump, interpolate
from losslab.surface.run import InterpolateConfig, SurfaceConfig, estimate, run
from losslab.surface.slices import Line, Surface, axis, line, plane, plane_key
from losslab.surface.trajectory import Trajectory, fit_range, project

__all__ = [
    "DIRECTION_KINDS",
    "Directions",
    "InterpolateConfig",
    "Interpolation",
    "Line",
    "Surface",
    "SurfaceConfig",
    "Trajectory",
    "axis",
    "bump",
    "estimate",
    "filter_normalize",
    "fit_range",
    "gaussian",
    "interpolate",
    "layer_normalize",
    "line",
    "make_directions",
    "orthogonalize",
    "pca_directions",
    "plane",
    "plane_key",
    "project",
    "random_directions",
    "run",
]
