"""Per-layer weight spectra: ESDs of WᵀW against Marchenko–Pastur, power-law tails with error bars."""

from losslab.spectra.esd import CONV_MODES, esd, marchenko_pastur_cdf, marchenko_pastur_edges, weight_matrices
from losslab.spectra.powerlaw import PowerLawFit, fit_power_law, power_law_sample
from losslab.spectra.run import LayerSpectrum, SpectraConfig, SpectraResult, layer_spectra

__all__ = [
    "CONV_MODES",
    "LayerSpectrum",
    "PowerLawFit",
    "SpectraConfig",
    "SpectraResult",
    "esd",
    "fit_power_law",
    "layer_spectra",
    "marchenko_pastur_cdf",
    "marchenko_pastur_edges",
    "power_law_sample",
    "weight_matrices",
]
