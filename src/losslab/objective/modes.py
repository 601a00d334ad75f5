"""Train and eval mode: which one a model is in, and what switching to eval changes.

PyTorch modules carry a ``training`` flag that changes what some layers compute:
dropout is active only in train mode, and batch norm normalizes with the batch's own
statistics in train mode but with its running statistics in eval mode. losslab trains
in train mode (the model as its author defined it) and evaluates every analysis in
eval mode; these helpers let results say so, and let errors say what eval mode did.
"""

from __future__ import annotations

from torch import nn

__all__ = ["determinism_fix", "eval_changes", "mode_of"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def mode_of(model: nn.Module) -> str:
    """'train' when every module is in train mode, 'eval' when none is, else 'mixed'."""
    flags = {m.training for m in model.modules()}
    return "mixed" if len(flags) > 1 else ("train" if flags == {True} else "eval")


def eval_changes(model: nn.Module) -> list[str]:
    """What ``model.eval()`` changes in the layers losslab knows, one phrase per layer.

    Only layers whose forward reads ``training`` in torch itself are listed (dropout,
    batch norm, attention dropout); a user layer that reads ``self.training`` cannot be
    seen from outside.
    """
    out = []
    for name, m in model.named_modules():
        where = name or "model"
        if isinstance(m, _DROPOUT) and m.p > 0:
            out.append(f"dropout p={m.p:g} off in {where}")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out.append(f"batch norm uses its running statistics in {where}")
        elif isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
            out.append(f"attention dropout p={m.dropout:g} off in {where}")
    return out


def determinism_fix(model: nn.Module) -> str:
    """The end of a determinism-check error: what to do, given the mode the model is in."""
    if any(m.training for m in model.modules()):
        return "call model.eval() or pass check_determinism=False"
    changes = eval_changes(model)
    did = f"eval mode already turned {'; '.join(changes)}" if changes else "eval mode changed no dropout or batch norm"
    return (
        f"the model is in eval mode ({did}), so the randomness is in its forward itself (torch.rand, "
        "random augmentation): make the forward deterministic or pass check_determinism=False"
    )
