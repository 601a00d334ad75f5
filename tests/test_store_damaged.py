"""Damaged, hostile and concurrent inputs to run directories: each is one line, exit 2, nothing half-written.

Every test here failed on the code before the change it checks (issue 12, section 4):
an internal error (exit 1), torch's multi-line advice, a silently used unfinished
run, a wrong ``resumed`` flag, stray temporary files, or a second process clobbering
the first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.models import build_model, load_checkpoint
from losslab.store import Chunks, RunDir

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, message: str) -> str:
    """Assert the documented shape of a user error and return its line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("losslab: error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "\x1b[" not in result.stderr
    return lines[0]


TRAIN = ["train", "--data", "xor", "--epochs", "2", "--batch-size", "0", "--json"]


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small complete train run (the command TRAIN); tests copy it before damaging it."""
    out = tmp_path_factory.mktemp("runs") / "train"
    result = invoke(*TRAIN, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def set_status(run: Path, status: str) -> None:
    """What a process killed mid-run leaves: its run.json as it was while it ran."""
    manifest = json.loads((run / "run.json").read_text())
    manifest["status"] = status
    (run / "run.json").write_text(json.dumps(manifest))


def truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ------------------------------------------------------------------ damaged run.json and results
@pytest.mark.parametrize(
    "manifest",
    [
        {"results": 5},
        {"schema": 1, "command": "train", "status": "complete", "results": {"train": 3}},
        {"schema": 1, "command": "train", "status": "complete", "results": {"train": {"file": 7, "value": {}}}},
        {"schema": 1, "command": "train", "results": {"x": {"file": "../../etc/passwd", "value": {}}}},
        {"schema": 1, "command": "train", "config": "digits", "results": {}},
        [1, 2, 3],
    ],
    ids=["results-int", "entry-int", "file-int", "file-outside", "config-string", "a-list"],
)
def test_show_refuses_a_run_json_of_another_shape(tmp_path: Path, manifest: object) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(manifest))
    one_line_error(invoke("show", tmp_path / "r"), "run.json of")


def test_a_truncated_result_file_is_a_user_error_for_show_and_checkpoint(train_run: Path, tmp_path: Path) -> None:
    run = copy_run(train_run, tmp_path / "run")
    truncate(run / "results" / "train.npz")
    one_line_error(invoke("show", run), "result 'train'")
    out = tmp_path / "hessian"
    one_line_error(invoke("hessian", "--checkpoint", run, "--top", "1", "--out", out), "result 'train'")
    assert not out.exists()


def test_a_truncated_model_file_is_a_user_error(train_run: Path, tmp_path: Path) -> None:
    run = copy_run(train_run, tmp_path / "run")
    truncate(run / "model.pt")
    out = tmp_path / "hessian"
    line = one_line_error(invoke("hessian", "--checkpoint", run, "--top", "1", "--out", out), "cannot be read")
    assert "torch.save(model.state_dict(), path)" in line
    assert not out.exists()


def test_a_checkpoint_weights_only_loading_refuses_says_what_to_save(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    model = build_model("mlp:2-2-2,act=tanh")
    torch.save({**model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)  # not a plain state_dict
    out = tmp_path / "out"
    line = one_line_error(
        invoke("train", "--data", "xor", "--checkpoint", path, "--epochs", "1", "--out", out),
        "is not a plain state_dict of tensors",
    )
    assert "torch.save(model.state_dict(), path)" in line and "weights_only=False" not in line
    assert not out.exists()


# ------------------------------------------------------------------ data sizes
def test_impossible_data_sizes_never_reach_the_solver(tmp_path: Path) -> None:
    out = tmp_path / "out"
    one_line_error(
        invoke("exact", "relu2", "--data", "spirals:n=-5", "--out", out),
        "The 'n' parameter of data 'spirals' must be an int ≥ 1. Got -5.",
    )
    assert not out.exists()


# ------------------------------------------------------------------ damaged chunks
def test_a_truncated_chunk_is_recomputed_and_the_run_finishes(tmp_path: Path) -> None:
    args = ["surface", "--data", "xor", "--model", "mlp:2-2-2,act=tanh", "--steps", "5", "--rows-per-chunk", "1"]
    whole = tmp_path / "whole"
    assert invoke(*args, "--out", whole, "--json").exit_code == 0
    crashed = copy_run(whole, tmp_path / "crashed")
    set_status(crashed, "running")  # killed before it finished ...
    chunk_files = sorted((crashed / "chunks" / "plane").glob("*.npz"))
    truncate(chunk_files[2])  # ... while writing its third piece
    (crashed / "chunks" / "plane" / ".000003.npz.x1y2.tmp").write_bytes(b"half")  # and a temporary file
    rerun = invoke(*args, "--out", crashed, "--json")
    assert rerun.exit_code == 0, rerun.stderr
    manifest = json.loads((crashed / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed"]
    assert manifest["chunks_reused"] == len(chunk_files) - 1  # every piece but the damaged one
    assert not list(crashed.rglob("*.tmp"))
    np.testing.assert_array_equal(load(crashed).result.loss, load(whole).result.loss)


def test_chunks_discard_a_damaged_piece_and_compute_it_again(tmp_path: Path) -> None:
    chunks = Chunks(tmp_path / "c", {"k": 1})
    chunks.map(lambda i: {"v": np.full(3, float(i))}, 3)
    truncate(tmp_path / "c" / "000001.npz")
    (tmp_path / "c" / "000002.npz").write_bytes(b"")
    calls: list[int] = []

    def piece(i: int) -> dict[str, np.ndarray]:
        calls.append(i)
        return {"v": np.full(3, float(i))}

    out = Chunks(tmp_path / "c", {"k": 1}).map(piece, 3)
    assert calls == [1, 2] and [float(o["v"][0]) for o in out] == [0.0, 1.0, 2.0]


# ------------------------------------------------------------------ unfinished runs
@pytest.mark.parametrize("status", ["running", "failed"])
def test_an_unfinished_train_run_is_refused_as_a_checkpoint(train_run: Path, tmp_path: Path, status: str) -> None:
    run = copy_run(train_run, tmp_path / "run")
    set_status(run, status)
    why = "killed before it finished" if status == "running" else "it failed"
    for checkpoint in (run, run / "model.pt"):
        out = tmp_path / "hessian"
        one_line_error(invoke("hessian", "--checkpoint", checkpoint, "--top", "1", "--out", out), why)
        assert not out.exists()


def test_a_run_being_written_is_refused_as_a_checkpoint(train_run: Path, tmp_path: Path) -> None:
    run = copy_run(train_run, tmp_path / "run")
    set_status(run, "running")
    (run / ".lock").write_text(f"{os.getpid()}\n")  # a live writer
    one_line_error(invoke("hessian", "--checkpoint", run, "--top", "1"), "another process is still writing it")


def test_show_says_a_killed_run_is_interrupted(train_run: Path, tmp_path: Path) -> None:
    run = copy_run(train_run, tmp_path / "run")
    set_status(run, "running")
    assert load(run).status == "interrupted"
    shown = invoke("show", run, "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["status"] == "interrupted"


def test_a_rerun_that_starts_over_is_not_marked_resumed(train_run: Path, tmp_path: Path) -> None:
    run = copy_run(train_run, tmp_path / "run")
    set_status(run, "running")
    (run / f".run.json.{os.getpid()}.tmp").write_text("{")  # a write the kill interrupted
    again = invoke(*TRAIN, "--out", run)  # the same command: training starts over (it has no chunks)
    assert again.exit_code == 0, again.stderr
    rerun = json.loads((run / "run.json").read_text())
    assert rerun["status"] == "complete" and rerun["resumed"] is False and rerun["chunks_reused"] == 0
    assert not list(run.rglob("*.tmp"))


def test_the_report_shows_the_wall_time(train_run: Path) -> None:
    report = (train_run / "report.html").read_text()
    seconds = json.loads((train_run / "run.json").read_text())["wall_seconds"]
    assert isinstance(seconds, float) and "wall time: null" not in report and "wall time: not recorded" not in report


def test_resuming_does_not_depend_on_how_the_checkpoint_path_is_spelled(
    train_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_run(train_run, tmp_path / "t")
    monkeypatch.chdir(tmp_path)
    args = ["hessian", "--top", "1", "--out", "h", "--json"]
    assert invoke(*args, "--checkpoint", "t").exit_code == 0
    set_status(tmp_path / "h", "running")
    resumed = invoke(*args, "--checkpoint", str(tmp_path / "t"))
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads((tmp_path / "h" / "run.json").read_text())["resumed"]


# ------------------------------------------------------------------ one writer per directory
def test_a_second_process_on_the_same_out_is_refused(train_run: Path, tmp_path: Path) -> None:
    run = copy_run(train_run, tmp_path / "run")
    set_status(run, "running")
    (run / ".lock").write_text(f"{os.getpid()}\n")  # a live process holds it
    before = (run / "run.json").read_text()
    args = [*TRAIN, "--out", run]
    one_line_error(invoke(*args), f"being written by another losslab process (pid {os.getpid()})")
    assert (run / "run.json").read_text() == before and (run / ".lock").is_file()
    (run / ".lock").write_text(f"{dead_pid()}\n")  # its writer is gone: a stale lock
    assert invoke(*args).exit_code == 0
    assert load(run).status == "complete" and not (run / ".lock").exists()


def test_force_never_overwrites_a_run_another_process_is_writing(train_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    surface = RunDir.create(out, command="surface", config={"steps": 5})  # a surface run in progress (this pid)
    before = (out / "run.json").read_text()
    one_line_error(
        invoke("train", "--data", "xor", "--epochs", "1", "--out", out, "--force"), "being written by another"
    )
    assert (out / "run.json").read_text() == before
    surface.complete({})
    assert load(out).status == "complete" and load(out).command == "surface"


def test_a_real_second_process_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from losslab.store import RunDir; "
            f"RunDir.create({str(out)!r}, command='surface', config={{}}); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        one_line_error(invoke("train", "--data", "xor", "--epochs", "1", "--out", out), f"(pid {holder.pid})")
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe
    assert load(out).status == "interrupted"  # killed: the lock it left is stale
    assert invoke("train", "--data", "xor", "--epochs", "1", "--out", out, "--force").exit_code == 0


def test_load_checkpoint_refuses_a_plain_file_of_an_unfinished_run_in_python(train_run: Path, tmp_path: Path) -> None:
    from losslab.errors import UserError

    run = copy_run(train_run, tmp_path / "run")
    set_status(run, "failed")
    with pytest.raises(UserError, match="not complete"):
        load_checkpoint(build_model(load(run).manifest["config"]["model"]), run / "model.pt")


# ------------------------------------------------------------------ user code that raises
def test_a_data_function_that_raises_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def data():\n    raise ValueError('no such file:\\n  data.csv')\n")
    out = tmp_path / "out"
    line = one_line_error(
        invoke("train", "--data", f"{tmp_path / 'broken.py'}:data", "--epochs", "1", "--out", out),
        "broken.py:data' raised ValueError: no such file: data.csv. Fix that function",
    )
    assert line.startswith("losslab: error: The data function")
    assert not out.exists()
