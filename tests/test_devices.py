"""Devices: what can be checked of the CUDA path on a machine without one.

CI never has a GPU, so these tests stand in CUDA's answers (``is_available``, the device count,
the current device) with monkeypatch and check losslab's own logic around them: a device is
validated and carries its index, so that 'cuda' and 'cuda:0' compare equal wherever two
objectives' devices are compared, and float32 on CUDA is IEEE float32 (TF32 off).
"""

from __future__ import annotations

import pytest
import torch

from losslab.errors import UserError
from losslab.objective import objective as objective_module
from losslab.objective import resolve_device


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    calls: list[str] = []
    monkeypatch.setattr(objective_module, "_float32_without_tf32", lambda: calls.append("tf32 off"))
    return calls


def test_cuda_devices_carry_their_index_and_must_exist(two_gpus: list[str]) -> None:
    assert resolve_device("cuda") == torch.device("cuda", 1)  # the current device, named
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device(torch.device("cuda", 1)) == resolve_device("cuda")
    with pytest.raises(UserError, match=r"'cuda:2' does not exist here: use cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    assert two_gpus == ["tf32 off"] * 4  # every CUDA device turns TF32 off
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    assert len(two_gpus) == 4  # and the CPU leaves the flags alone


def test_without_cuda_the_error_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available here: use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(UserError, match=r"must be 'cpu' or 'cuda\[:i\]'. Got 'tpu'"):
        resolve_device("tpu")


def test_float32_on_cuda_is_ieee_float32() -> None:
    # torch's backend flags are properties that monkeypatch cannot undo: saved and restored here
    if not hasattr(torch.backends.cudnn, "fp32_precision"):  # torch < 2.9: the legacy flags
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
            objective_module._float32_without_tf32()
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        return
    # PyTorch's own default lets cuDNN convolutions run in TF32; a user may have asked for it elsewhere
    backends = (torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cudnn.rnn, torch.backends.cuda.matmul)
    saved = [backend.fp32_precision for backend in backends]
    try:
        for backend in backends:
            backend.fp32_precision = "tf32"
        objective_module._float32_without_tf32()
        assert [backend.fp32_precision for backend in backends] == ["ieee"] * 4
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        for backend, value in zip(backends, saved):
            backend.fp32_precision = value


def test_ray_is_refused_beside_cuda() -> None:
    from losslab.cli.common import cluster_executor

    assert cluster_executor(None, "cuda") is None  # no --ray: the pieces run here, on the GPU
    with pytest.raises(UserError, match="--ray runs pieces on CPU workers: drop --ray to use the GPU"):
        cluster_executor("local", "cuda:0")
