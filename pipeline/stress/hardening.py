"""Adversarial training: each batch is replaced by its worst case within an L-inf ball.

PGD maximises the model's own training loss (reconstruction, and the mask loss for DRAEM)
towards the clean target, so the model learns to map small perturbations of a good part
back to the part: an attacker then has to move the input further to raise a false alarm.
The attack runs with the model in eval mode, so its extra passes leave batch-norm
statistics alone.
"""

import torch

from pipeline.models.base import Reconstructor


def adversarial_inputs(
    model: Reconstructor,
    inputs: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    eps: float,
    steps: int,
    ssim_weight: float,
) -> torch.Tensor:
    """PGD with a random start on the training loss; `eps` in [0, 1] units."""
    was_training = model.training
    model.eval()
    step = 1.25 * eps / steps
    delta = (torch.rand_like(inputs) * 2 - 1) * eps
    for _ in range(steps):
        adv = (inputs + delta).clamp(0, 1).requires_grad_(True)
        loss, _ = model.loss(target, model(adv), ssim_weight, mask)
        (grad,) = torch.autograd.grad(loss, adv)
        delta = (delta + step * grad.sign()).clamp(-eps, eps)
    model.train(was_training)
    return (inputs + delta).clamp(0, 1).detach()
