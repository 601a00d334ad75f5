"""Certified global optima of small networks, and how far gradient descent lands from them.

- `perceptron`: linear separability as an LP, with a maximal-margin unit or a Gordan
  certificate checked in exact arithmetic; the fewest-errors unit as a MILP.
- `three_node`: the Blum–Rivest network (two threshold units and an AND), whose training
  is NP-complete: an exact MILP, brute-force set splitting, both directions of the theorem.
- `scaling`: time to certify vs instance size until a budget runs out.
- `relu2`: two-layer ReLU networks with weight decay, certified through the convex
  program of Pilanci & Ergen (2020) over every activation pattern (`arrangement`).
- `sgd_gap`: seed ensembles of gradient training against those certificates.
- `instances`: user set-splitting instances (JSON or a function), mixed subset sizes, and
  the checked proof of infeasibility (a minimal unsplittable core).
- `min_error`: the fewest errors of the 3-node network, with a certified gap, on
  set-splitting instances with planted label noise; a brute-force reference.
- `runner`: one config and one runner per ``losslab exact`` command (CLI ≡ Python).
"""

from losslab.exact.arrangement import activation_patterns, pattern_count_bound, sample_patterns
from losslab.exact.instances import instance_from_subsets, load_instance, mixed_instance, unsplittable_core
from losslab.exact.min_error import (
    MinErrorResult,
    brute_force_min_errors,
    min_errors,
    noisy_points,
    teacher_points,
)
from losslab.exact.perceptron import (
    FewestErrorsResult,
    PerceptronResult,
    fewest_errors,
    perceptron,
    separate,
)
from losslab.exact.relu2 import (
    Relu2Result,
    parse_patterns,
    relu2_objective,
    relu2_optimum,
    relu2_outputs,
)
from losslab.exact.runner import (
    PerceptronConfig,
    Relu2Config,
    ScalingConfig,
    ThreeNodeConfig,
    run,
    run_perceptron,
    run_relu2,
    run_scaling,
    run_three_node,
)
from losslab.exact.scaling import (
    SWEEPS,
    ScalingResult,
    element_sizes,
    subset_sizes,
    three_node_scaling,
)
from losslab.exact.sgd_gap import (
    RELAXATION_CONFIG,
    RELU2_CONFIG,
    RelaxationResult,
    SgdGapResult,
    relu2_sgd_gap,
    three_node_relaxation,
)
from losslab.exact.solver import SolverError
from losslab.exact.three_node import (
    ThreeNodeFit,
    ThreeNodeResult,
    and_outputs,
    brute_force_splitting,
    certify_three_node,
    network_splitting,
    splitting_network,
    train_three_node,
)
from losslab.exact.threshold import binary_labels, unit_outputs, weight_bound

__all__ = [
    "RELAXATION_CONFIG",
    "RELU2_CONFIG",
    "SWEEPS",
    "FewestErrorsResult",
    "MinErrorResult",
    "PerceptronConfig",
    "PerceptronResult",
    "RelaxationResult",
    "Relu2Config",
    "Relu2Result",
    "ScalingConfig",
    "ScalingResult",
    "SgdGapResult",
    "SolverError",
    "ThreeNodeConfig",
    "ThreeNodeFit",
    "ThreeNodeResult",
    "activation_patterns",
    "and_outputs",
    "binary_labels",
    "brute_force_min_errors",
    "brute_force_splitting",
    "certify_three_node",
    "element_sizes",
    "fewest_errors",
    "instance_from_subsets",
    "load_instance",
    "min_errors",
    "mixed_instance",
    "network_splitting",
    "noisy_points",
    "parse_patterns",
    "pattern_count_bound",
    "perceptron",
    "relu2_objective",
    "relu2_optimum",
    "relu2_outputs",
    "relu2_sgd_gap",
    "run",
    "run_perceptron",
    "run_relu2",
    "run_scaling",
    "run_three_node",
    "sample_patterns",
    "separate",
    "splitting_network",
    "subset_sizes",
    "teacher_points",
    "three_node_relaxation",
    "three_node_scaling",
    "train_three_node",
    "unit_outputs",
    "unsplittable_core",
    "weight_bound",
]
