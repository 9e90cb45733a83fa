"""Our Adam against torch.optim.Adam: the same update, bit for bit on the CPU."""

import sys

import pytest
import torch

from geomorph_bids.model.adam import Adam


def _run(make, steps: int = 25, schedule: bool = True) -> list[torch.Tensor]:
    torch.manual_seed(3)
    a = torch.randn(40, 3, requires_grad=True)
    b = torch.randn(7, requires_grad=True)
    target = torch.randn(40, 3)
    opt, set_lr = make([a, b])
    for step in range(steps):
        if schedule:
            set_lr(opt, 0.05 * (0.05 + 0.95 * (1 - step / steps)))
        loss = ((a - target) ** 2).sum() + (b.sin() * a[:7, 0]).sum() + (a ** 4).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [a.detach().clone(), b.detach().clone()]


def _torch_adam(params):
    def set_lr(opt, lr):
        for group in opt.param_groups:
            group["lr"] = lr
    return torch.optim.Adam(params, lr=0.05), set_lr


def _our_adam(params):
    def set_lr(opt, lr):
        opt.lr = lr
    return Adam(params, lr=0.05), set_lr


@pytest.mark.parametrize("schedule", [False, True])
def test_the_update_is_torch_adams_to_the_last_bit(schedule):
    ours, theirs = _run(_our_adam, schedule=schedule), _run(_torch_adam, schedule=schedule)
    for x, y in zip(ours, theirs):
        assert torch.equal(x, y)
    # and it moved: a test of nothing would pass too
    assert float((ours[0] - torch.randn(40, 3)).abs().max()) > 0


def test_a_parameter_without_a_gradient_is_left_alone():
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    (a ** 2).sum().backward()
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2))
    assert torch.allclose(a.detach(), torch.full((3,), 0.9))  # Adam's first step is lr * sign(grad)


def test_empty_parameter_list_is_refused():
    with pytest.raises(ValueError, match="empty"):
        Adam([], lr=0.1)


def test_registration_optimiser_does_not_import_torchdynamo(tmp_path):
    """The point of the module: the per-pair optimiser stays clear of torch.optim and
    torch.use_deterministic_algorithms, whose first use imports TorchDynamo (about a second)."""
    import subprocess

    code = ("import sys, numpy as np\n"
            "from geomorph_bids.model.optimise import OptimiseConfig, optimise_warp\n"
            "from geomorph_bids.sphere.icosphere import icosphere\n"
            "v, _ = icosphere(6)\n"
            "x = np.sin(3 * v[:, :1]) + np.cos(2 * v[:, 1:2])\n"
            "cfg = OptimiseConfig(control_levels=(2,), data_levels=(3,), steps=(3,), smoothing=(1,))\n"
            "optimise_warp(x, np.roll(x, 5, axis=0), cfg)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
