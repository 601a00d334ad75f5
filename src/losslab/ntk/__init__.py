"""The empirical neural tangent kernel (`kernel`, `run`) and per-layer weight spectra (`spectra`)."""

from losslab.ntk.kernel import METHODS, choose_method, ntk, ntk_vector_product
from losslab.ntk.run import NTKConfig, NTKResult, run_objective

__all__ = [
    "METHODS",
    "NTKConfig",
    "NTKResult",
    "choose_method",
    "ntk",
    "ntk_vector_product",
    "run_objective",
]
