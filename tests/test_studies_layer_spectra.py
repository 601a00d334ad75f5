"""The layer-spectra study: random at init, credible heavy tails after clean training, resume, figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslab.errors import UserError
from losslab.report import figures_of
from losslab.spectra import SpectraConfig, layer_spectra
from losslab.studies import STUDIES, StudyContext
from losslab.studies.layer_spectra import LayerSpectraResult, _objective

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick() -> LayerSpectraResult:
    study = STUDIES["layer-spectra"]
    return study.run(study.config("quick"), StudyContext())


def test_init_is_random_and_clean_training_grows_a_tail(quick: LayerSpectraResult) -> None:
    assert quick.layers == ["1.weight", "3.weight"] and quick.alpha.shape == (2, 3, 2)
    # The same initialization for every noise level, and it is a random matrix: Marchenko–Pastur holds
    # (KS ≤ 0.05 at 64 and 256 eigenvalues), nothing sits above the bulk edge, no fit is credible.
    np.testing.assert_array_equal(quick.alpha[0, 0], quick.alpha[1, 0])
    assert np.all(quick.mp_ks[:, 0] < 0.05) and np.all(quick.above_edge[:, 0] == 0)
    assert not quick.credible[:, 0].any() and quick.summary()["credible_at_init"] == 0
    # Clean labels: the network learns (test error < 10 %), eigenvalues leave the bulk, and the
    # 256×256 layer ends with a credible α inside Martin & Mahoney's 2–6 (measured 3.4, [2.9, 4.1]).
    clean, noisy = 0, 1
    assert quick.test_error[clean, -1] < 0.1 and quick.test_error[noisy, -1] > 0.7
    assert np.all(quick.above_edge[clean, -1] > 0)
    assert quick.credible[clean, -1, 1] and 2 < quick.alpha[clean, -1, 1] < 6
    assert quick.alpha[clean, -1, 1] < quick.alpha[clean, 0, 1]
    # Random labels, not yet memorized at this budget: no credible fit anywhere.
    assert not quick.credible[noisy].any()


def test_point_matches_spectra_of_the_snapshot(quick: LayerSpectraResult) -> None:
    # The study's α at init is `layer_spectra` of the model it builds, with the study's fit settings.
    study = STUDIES["layer-spectra"]
    config = study.config("quick")
    objective = _objective(config, 0.0, StudyContext())
    direct = layer_spectra(objective.layout.unflatten(objective.theta0), config.spectra())
    assert isinstance(config.spectra(), SpectraConfig)
    np.testing.assert_array_equal(direct.alpha, quick.alpha[0, 0])


def test_resume_figure_and_validation(tmp_path: Path, quick: LayerSpectraResult) -> None:
    study = STUDIES["layer-spectra"]
    config = study.config("quick", label_noise=(0.0, 0.5), epochs=2, tracks=1, bootstrap=5, gof=0)
    chunks = tmp_path / "chunks"
    first = study.run(config, StudyContext(directory=chunks))
    stored = sorted((chunks / "layer-spectra").glob("0*.npz"))
    assert len(stored) == 2
    stored[1].unlink()  # killed after the first point
    again = study.run(config, StudyContext(directory=chunks))
    for name in ("alpha", "alpha_low", "test_error", "mp_ks"):
        assert getattr(first, name).tobytes() == getattr(again, name).tobytes(), name
    assert [f.slug for f in figures_of(quick)] == ["layer-spectra"]
    with pytest.raises(UserError, match="label_noise"):
        study.config("quick", label_noise=(1.5,))
