"""Zero-cost proxies: scores of an untrained network that rank architectures for nothing.

Each proxy is a function ``proxy(model, inputs) -> float`` on a freshly initialised
``torch.nn.Module`` and a batch of real inputs; a higher score predicts a better network.
``compute_proxies`` evaluates several at once, deterministically for a seed. They serve as
weak labels for pretraining rankers and as the ``zero-cost`` baseline predictor.

- ``params``, ``flops``: size (FLOPs counted on one input: multiply-adds of convs and linears).
- ``synflow`` (Tanaka et al. 2020): ``sum |theta * dR/dtheta|`` with ``R`` the output sum of
  the network with absolute weights on an all-ones input; data-free. Reported as ``log``.
- ``nwot`` (Mellor et al. 2021, "NAS without training"): log-determinant of the Hamming
  kernel of the ReLU activation patterns over the batch.
- ``jacov`` (Mellor et al. 2020): how uncorrelated the input Jacobians of the batch are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["PROXIES", "compute_proxies", "image_batch", "flops", "params", "synflow", "nwot", "jacov"]


def params(model, inputs) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def flops(model, inputs) -> float:
    """Multiply-adds of every conv and linear layer for one input sample."""
    import torch

    total = [0.0]

    def conv_hook(mod, inp, out):
        k = mod.weight[0].numel()  # (c_in / groups) * kh * kw
        total[0] += float(out[0].numel()) * k

    def linear_hook(mod, inp, out):
        total[0] += float(out[0].numel()) * mod.in_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, torch.nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(inputs[:1])
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def synflow(model, inputs) -> float:
    import copy

    import torch

    net = copy.deepcopy(model).double().eval()  # eval: BN at its initial identity statistics
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.zero_grad()
    out = net(torch.ones((1,) + tuple(inputs.shape[1:]), dtype=torch.float64))
    out.sum().backward()
    score = 0.0
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.grad is not None:
            score += float((m.weight.detach() * m.weight.grad).abs().sum())
    return math.log(score) if score > 0 else -math.inf


def nwot(model, inputs) -> float:
    import torch

    codes: list = []

    def hook(mod, inp, out):
        codes.append((inp[0].detach().flatten(1) > 0).double())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model.train()(inputs)
    finally:
        for h in hooks:
            h.remove()
    if not codes:
        return 0.0
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) > 0 else -math.inf


def jacov(model, inputs) -> float:
    import torch

    x = inputs.clone().requires_grad_(True)
    model.train()
    model.zero_grad()
    out = model(x)
    out.backward(torch.ones_like(out))
    if x.grad is None:  # the output does not depend on the input (no path through the cell)
        return -math.inf
    jac = x.grad.flatten(1).double()
    corr = torch.corrcoef(jac)
    if not torch.all(torch.isfinite(corr)):
        return -math.inf
    eig = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-torch.sum(torch.log(eig.clamp_min(0) + k) + 1.0 / (eig.clamp_min(0) + k)))


PROXIES: dict[str, Callable[[Any, Any], float]] = {
    "params": params, "flops": flops, "synflow": synflow, "nwot": nwot, "jacov": jacov}


def image_batch(batch: int = 64, side: int = 32, seed: int = 0):
    """A batch of real photographs (scikit-learn's sample images), random crops resized to
    ``side`` pixels and standardised: the proxies that look at activations need real inputs,
    and these ship with scikit-learn, so no download is needed."""
    import torch
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    images = [torch.tensor(im, dtype=torch.float32).permute(2, 0, 1) / 255.0
              for im in load_sample_images().images]
    crops = []
    for _ in range(batch):
        im = images[int(rng.integers(len(images)))]
        size = int(rng.integers(side * 2, min(im.shape[1:]) + 1))
        top = int(rng.integers(im.shape[1] - size + 1))
        left = int(rng.integers(im.shape[2] - size + 1))
        crop = im[:, top:top + size, left:left + size]
        if rng.random() < 0.5:
            crop = crop.flip(2)
        crops.append(torch.nn.functional.interpolate(crop[None], size=(side, side), mode="bilinear",
                                                     antialias=True, align_corners=False)[0])
    x = torch.stack(crops)
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


def compute_proxies(build: Callable[[], Any], inputs, names: Sequence[str] = ("synflow", "nwot", "jacov"),
                    *, seed: int = 0) -> dict[str, float]:
    """Score one architecture: ``build()`` returns a fresh module, initialised under ``seed``.

    Each proxy gets its own fresh copy of the same initial weights, so none sees another's
    side effects (gradients, BN statistics). Unknown names raise ``ValueError``.
    """
    import torch

    bad = [n for n in names if n not in PROXIES]
    if bad:
        raise ValueError(f"names: got {bad[0]!r}; valid: {', '.join(PROXIES)}")
    torch.manual_seed(seed)
    model = build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = {}
    for name in names:
        model.load_state_dict(state)
        out[name] = PROXIES[name](model, inputs)
    return out
