"""The studies on their full presets, checked against the published anchors they reproduce.

Each study runs as ``losslab study NAME`` would (a run directory with chunks, figures and
report under ``--out``; rerunning resumes), and the benchmark prints one JSON line per
study: wall time, the study's summary, and each anchor with the value measured and
whether it held. There is no faster path to compare against here: a study's cost is its
training (seed ensembles against the sequential loop: `benchmarks/ensemble.py`) and its
curvature (Lanczos, Hutchinson, SLQ against dense references: `benchmarks/curvature.py`).

    python benchmarks/studies.py                    # every registered study, full presets
    python benchmarks/studies.py restarts saddles   # some of them
    python benchmarks/studies.py --quick            # the quick presets (their wall time)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit

from losslab import load
from losslab.cli.study import run_study
from losslab.studies import STUDIES


def _check(claim: str, value: Any, holds: bool) -> dict[str, Any]:
    return {"claim": claim, "measured": value, "holds": bool(holds)}


def anchors(name: str, result: Any) -> list[dict[str, Any]]:
    """The published claims each study reproduces, as measured in this run."""
    if name == "restarts":
        out = []
        for p in result.problems:
            failed = int((~p.reached).sum())
            if p.name == "digits":
                out.append(_check("digits MLP: every restart reaches the target", failed, failed == 0))
            elif p.name in ("xor", "teacher"):
                out.append(_check(f"{p.name}: some restarts fail (bad minima / plateaus)", failed, failed > 0))
        return out
    if name == "random-labels":
        fits = result.best_train_accuracy.min(1)
        fit = result.mean("epochs_to_fit")
        test = result.mean("test_accuracy")
        one, zero = list(result.fractions).index(1.0), list(result.fractions).index(0.0)
        return [
            _check(
                "Zhang et al.: the MLP reaches 100 % training accuracy on fully random labels",
                float(fits[one]),
                fits[one] == 1.0,
            ),
            _check(
                "random labels take longer to fit than true labels (epochs, p=1 vs p=0)",
                [float(fit[zero]), float(fit[one])],
                fit[one] > fit[zero],
            ),
            _check(
                "test accuracy falls with p, to chance at p=1",
                [round(float(t), 4) for t in test],
                bool(np.all(np.diff(test) < 0.02)) and abs(test[one] - 0.1) < 0.05,
            ),
        ]
    if name == "gd-vs-sgd":
        out = []
        tail = max(1, result.sharpness.shape[1] // 4)
        gd = [r for r, opt in enumerate(result.optimizer) if opt == "gd"]
        for g, r in enumerate(gd):
            lr = float(result.lr[r])
            late = float(np.nanmean(result.sharpness[g, -tail:])) * lr / 2
            reached = bool(np.nanmax(result.sharpness[g]) * lr / 2 >= 0.95)
            if reached:
                out.append(
                    _check(
                        f"Cohen et al.: GD at η={lr:g} hovers at 2/η (λmax·η/2, last quarter)",
                        round(late, 4),
                        0.9 <= late <= 1.25,
                    )
                )
            else:
                rise = float(result.sharpness[g, -1] / result.sharpness[g, 0])
                out.append(
                    _check(
                        f"Cohen et al.: progressive sharpening at η={lr:g} (λmax end / start)",
                        round(rise, 3),
                        rise > 1.2,
                    )
                )
        for lr in sorted(set(result.lr[[r for r, o in enumerate(result.optimizer) if o == "sgd"]].tolist())):
            rows = [r for r, o in enumerate(result.optimizer) if o == "sgd" and result.lr[r] == lr]
            small = min(rows, key=lambda r: result.batch_size[r])
            ref = int(result.reference[small])
            out.append(
                _check(
                    f"SGD at η={lr:g}, smallest batch, ends flatter than GD (λmax·η/2: SGD, GD)",
                    [round(float(result.ratio[small]), 4), round(float(result.ratio[ref]), 4)],
                    result.ratio[small] < result.ratio[ref],
                )
            )
        return out
    if name == "saddles":
        on = result.plateau
        return [
            _check(
                "Dauphin et al.: training meets a plateau (small gradient, negative curvature)",
                result.plateau_spans(),
                bool(on.any()),
            ),
            _check(
                "plateau checkpoints are certified saddles",
                int((result.count_lower[on] > 0).sum()),
                bool(on.any()) and bool(np.all(result.count_lower[on] > 0)),
            ),
            _check(
                "the loss on the plateau is high (mean plateau loss / final loss)",
                round(float(result.loss[on].mean() / result.loss[-1]), 2) if on.any() else None,
                bool(on.any()) and result.loss[on].mean() > 10 * result.loss[-1],
            ),
        ]
    if name == "double-descent":
        threshold, peak = result.interpolation_threshold, result.peak_width
        return [
            _check("MNIST-1D authors: test-error peak near h ≈ 50–60", peak, 40 <= peak <= 80),
            _check(
                "MNIST-1D authors: training error first reaches zero near h ≈ 50–60",
                threshold,
                threshold is not None and 40 <= threshold <= 80,
            ),
            _check(
                "the test-loss peak sits at the interpolation threshold",
                int(result.widths[int(np.argmax(result.test_loss))]),
                threshold is not None and int(result.widths[int(np.argmax(result.test_loss))]) == threshold,
            ),
            _check(
                "the peak sits near the interpolation threshold (peak / threshold)",
                None if threshold is None else round(peak / threshold, 3),
                threshold is not None and 0.5 <= peak / threshold <= 2,
            ),
        ]
    return []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("studies", nargs="*", help="study names (default: every registered study)")
    parser.add_argument("--quick", action="store_true", help="the quick presets instead of the full ones")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    names = args.studies or list(STUDIES)
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        parser.error(f"unknown studies {unknown}; registered: {', '.join(STUDIES)}")
    root = args.out or Path(tempfile.mkdtemp(prefix="losslab-studies-"))
    for name in names:
        out = root / name
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as captured:
            run_study(name, quick=args.quick, device=args.device, out=out, force=False, json_out=True)
        wall = time.perf_counter() - start
        run = load(out)
        checks = anchors(name, run.result)
        emit(
            f"study-{name}",
            {
                "preset": "quick" if args.quick else "full",
                "device": args.device,
                "run": str(out),
                "wall_s": round(wall, 1),
                "resumed": bool(run.manifest.get("resumed")),
                "anchors": checks,
                "anchors_hold": all(c["holds"] for c in checks) if checks else None,
                "summary": json.loads(captured.getvalue())["result"] if captured.getvalue().strip() else None,
            },
        )


if __name__ == "__main__":
    main()
