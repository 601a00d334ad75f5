"""Result tables in words: significant digits, grouped matrices, no flattened dumps, names without repeats."""

from __future__ import annotations

import re

from losslab.report import Section, render_report
from losslab.report.html import figure_stem, format_value, headline, result_tables


def test_values_are_rounded_and_named_in_words() -> None:
    assert format_value([0.0, -0.0499999999999993]) == "(0, −0.05)"
    assert format_value(None) == "not computed"
    assert format_value(2.804410759171816e-09) == "2.804×10⁻⁹"
    assert format_value(1e-5) == "10⁻⁵"
    assert format_value(0.7297216597944498) == "0.7297"
    assert format_value(-0.0) == "0" and format_value(True) == "yes" and format_value(17610) == "17 610"
    assert format_value(list(range(20))) == "(0, 1, 2, 3, 4, … 20 values)"


def test_connect_results_are_a_few_grouped_tables_not_a_45_row_dump() -> None:
    stats = {"linear": 0.7297216597944498, "mean": 0.72972, "max_endpoint": 0.7288699634373188, "t_linear": 0.5}
    ends = {"train_loss": 0.0336, "train_error": 0.0041, "test_loss": 0.1046, "test_error": 0.0222}
    result = {  # the shape of ConnectResult.summary
        "barrier": {"naive": {k: stats for k in ends}, "aligned": {k: stats for k in ends}},
        "endpoints": {"a": ends, "b": ends},
        "permutation": {"method": "weights", "seconds": 0.1},
    }
    text = result_tables(result)
    rows = re.findall(r"<tr>", text)
    assert text.count("<table>") == 4  # a·b as one matrix, naive and aligned as one each, the permutation
    assert len(rows) <= 2 + 1 + 2 * 5 + 2  # header rows included; the flat dump had 45
    assert "max endpoint" in text and "0.7289" in text and "0.7288699634373188" not in text
    assert "<caption>barrier › naive</caption>" in text and "<caption>endpoints</caption>" in text


def test_a_value_that_was_not_computed_says_so_and_leaves_the_headline() -> None:
    manifest = {"command": "hessian", "result": {"top": {"eigenvalues": [2.0]}, "saddle": {"count": None}}}
    assert headline(manifest) == [("λmax", "2")]
    text = render_report("r", [Section("h", manifest, {})])
    assert "not computed" in text and "null" not in text


def test_unknown_commands_headline_their_first_scalars() -> None:
    manifest = {"command": "study double-descent", "result": {"best_width": 128, "best_test_error": 0.61100001}}
    assert headline(manifest) == [("best width", "128"), ("best test error", "0.611")]
    nested = {  # a study summary: per-problem dicts, short lists, checks and long texts
        "invariants": {"violations": 0},
        "anchor": "a long sentence naming the published result it reruns",
        "xor": {"seeds": 24, "train_loss_median": 0.0036971},
        "widths": [8, 32, 128],
        "runs": [{"lr": 0.1}],
    }
    assert headline({"command": "study restarts", "result": nested}) == [
        ("xor · seeds", "24"),
        ("xor · train loss median", "0.003697"),
        ("widths", "8, 32, 128"),
    ]


def test_the_connect_headline_reads_the_barriers_of_the_summary() -> None:
    barrier = {"naive": {"train_loss": {"linear": 0.7297}}, "aligned": {"train_loss": {"linear": 0.04382}}}
    manifest = {"command": "connect", "result": {"barrier": barrier, "endpoints": {}}}
    assert headline(manifest) == [("barrier (train loss) naive → aligned", "0.73 → 0.0438")]


def test_figure_file_names_name_each_part_once() -> None:
    assert figure_stem("surface", "surface-train", "train-surface-filter-filter") == "surface-train-filter"
    assert figure_stem("", "trace", "trace-xtrace") == "trace-xtrace"
    assert figure_stem("", "sharpness", "edge-of-stability") == "sharpness-edge-of-stability"


def test_png_figures_name_their_run_model_and_data(tmp_path) -> None:  # noqa: ANN001
    from losslab.report import Figure, new_figure

    static, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    fig = Figure("training", "Training curves", static, None)
    manifest = {"command": "train", "config": {"model": "mlp:64-100-100-10", "data": "digits"}, "status": "complete"}
    render_report("r", [Section("Train", manifest, {}, [("train", fig)], key="train")], tmp_path)
    assert static.get_suptitle() == "run: train · model: mlp:64-100-100-10 · data: digits"
    assert (tmp_path / "train-training.png").is_file()
    render_report("r", [Section("Train", manifest, {}, [("train", fig)], key="train")])
    assert static.get_suptitle().count("run: train") == 1
