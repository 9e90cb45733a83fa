"""Adam for the per-pair optimisers, without torch.optim's first-use import of TorchDynamo.

``torch.optim.Optimizer`` wraps its methods in ``torch._disable_dynamo``, which imports
TorchDynamo, sympy and mpmath (~800 modules, 0.9-1.0 s on 2 CPU cores) the first time an
optimiser is built in a process: every ``geomorph-register`` call, Nipype node process and batch
worker paid it before its first registration, a third of a 164k-vertex registration. The
registrations need only plain Adam with a learning rate that the caller sets per step; this is
``torch.optim.Adam``'s default update (no weight decay, no AMSGrad, not ``capturable``), written
with the same tensor operations in the same order, so results agree with it to the last bit on
the CPU (``tests/model/test_adam.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma & Ba, 2015) over some leaf tensors.

    Parameters
    ----------
    params : tensors with ``requires_grad``; updated in place by :meth:`step`.
    lr : learning rate (mutable attribute: set it before a step to schedule it).
    betas, eps : as in ``torch.optim.Adam``.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.steps = 0
        self._avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' ``.grad`` (a parameter without one is left alone)."""
        self.steps += 1
        correction1 = 1 - self.beta1 ** float(self.steps)
        correction2_sqrt = (1 - self.beta2 ** float(self.steps)) ** 0.5
        step_size = self.lr / correction1
        for p, avg, avg_sq in zip(self.params, self._avg, self._avg_sq):
            if p.grad is None:
                continue
            grad = p.grad
            avg.lerp_(grad, 1 - self.beta1)
            avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
            p.addcdiv_(avg, denom, value=-step_size)
