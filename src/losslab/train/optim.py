"""Optimizers on flat parameters, written once for θ [D] and for seed ensembles Θ [K, D].

Each follows torch.optim's update (tests compare them step by step), so a losslab run
and a hand-written PyTorch loop with the same seed agree. Updates are in place: one
pass over memory per tensor, which is what a 64-seed ensemble step is bound by.
"""

from __future__ import annotations

import torch

from losslab.train.config import TrainConfig

__all__ = ["FlatOptimizer"]


class FlatOptimizer:
    """SGD (plain or heavy-ball momentum) and Adam on a flat tensor, elementwise.

    ``step(theta, grad, lr, active)`` updates θ in place and returns it; rows of a
    [K, D] ensemble with ``active[k] = False`` keep their parameters and optimizer state.
    """

    def __init__(self, config: TrainConfig, like: torch.Tensor) -> None:
        self.config = config
        rows = like.shape[:-1] + (1,)
        self.t = torch.zeros(rows, dtype=like.dtype, device=like.device)  # steps taken, per row
        # A zero buffer makes the first step buf = g, as torch.optim.SGD does.
        self.buf = torch.zeros_like(like) if config.optimizer == "momentum" else None
        self.m = torch.zeros_like(like) if config.optimizer == "adam" else None
        self.v = torch.zeros_like(like) if config.optimizer == "adam" else None

    def step(
        self, theta: torch.Tensor, grad: torch.Tensor, lr: float, active: torch.Tensor | None = None
    ) -> torch.Tensor:
        if active is None or bool(active.all()):
            self._step(theta, grad, lr, self.buf, self.m, self.v, self.t)
            return theta
        rows = active.nonzero().squeeze(1)
        part = lambda x: None if x is None else x[rows]  # noqa: E731
        sub, buf, m, v, t = theta[rows], part(self.buf), part(self.m), part(self.v), self.t[rows]
        self._step(sub, grad[rows], lr, buf, m, v, t)
        theta[rows] = sub
        self.t[rows] = t
        for full, new in ((self.buf, buf), (self.m, m), (self.v, v)):
            if full is not None:
                full[rows] = new
        return theta

    def _step(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor,
        lr: float,
        buf: torch.Tensor | None,
        m: torch.Tensor | None,
        v: torch.Tensor | None,
        t: torch.Tensor,
    ) -> None:
        c = self.config
        t += 1
        if c.weight_decay:
            grad = grad.add(theta, alpha=c.weight_decay)
        if c.optimizer == "momentum":
            assert buf is not None
            buf.mul_(c.momentum).add_(grad)
            theta.add_(buf, alpha=-lr)
        elif c.optimizer == "adam":
            assert m is not None and v is not None
            beta1, beta2 = c.betas
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1, bias2 = 1 - beta1**t, 1 - beta2**t
            denom = (v.sqrt() / bias2.sqrt()).add_(c.eps)
            theta.addcdiv_(m * (lr / bias1), denom, value=-1.0)
        else:
            theta.add_(grad, alpha=-lr)
