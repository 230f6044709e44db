"""FGSM and PGD on the anomaly score, through the deployed module.

The attacked function is the module itself (map normalisation, fusion, smoothing) followed
by a smooth top-k mean: the deployed max-pooled score has a gradient at one pixel only,
which makes a weak attack look like a robust model. Success is judged with the deployed
score and threshold. Images stay in [0, 1] and within eps of the original (L-inf).
"""

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.scoring import InspectionModule

RAISE, LOWER = 1.0, -1.0  # raise the score of good parts, lower it on defective parts


def smooth_score(module: InspectionModule, x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the k highest fused-map values per image: a differentiable image score."""
    flat = module.fused_map(module.raw_maps(x)).flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1)


def pgd(
    module: InspectionModule,
    x: torch.Tensor,
    direction: float,
    eps: float,
    steps: int,
    k: int,
    *,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """L-inf PGD (step eps/4 by default, random start); FGSM is one step of size eps from x."""
    module.eval()
    step_size = eps / 4 if step_size is None else step_size
    generator = torch.Generator().manual_seed(seed)
    if random_start:
        delta = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * eps
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        adv = (x + delta).clamp(0, 1).requires_grad_(True)
        objective = direction * smooth_score(module, adv, k).sum()
        (grad,) = torch.autograd.grad(objective, adv)
        delta = (delta + step_size * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).clamp(0, 1).detach()


def fgsm(module: InspectionModule, x: torch.Tensor, direction: float, eps: float, k: int):
    return pgd(module, x, direction, eps, 1, k, step_size=eps, random_start=False)


@dataclass
class AttackOutcome:
    """Deployed scores before and after attacking a set of images in one direction, and the
    attacked images (for the report's examples)."""

    clean: np.ndarray
    attacked: np.ndarray
    adversarial: torch.Tensor


@torch.no_grad()
def deployed_scores(module: InspectionModule, x: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    return np.concatenate(
        [module(x[i : i + batch_size])[0].cpu().numpy() for i in range(0, len(x), batch_size)]
    )


def attack(
    module: InspectionModule,
    x: torch.Tensor,
    direction: float,
    method: str,
    eps: float,
    steps: int,
    k: int,
    seed: int = 0,
    batch_size: int = 16,
) -> AttackOutcome:
    """Attack every image (batch by batch) and score it as deployed."""
    adversarial = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if method == "fgsm":
            adversarial.append(fgsm(module, chunk, direction, eps, k))
        else:
            adversarial.append(pgd(module, chunk, direction, eps, steps, k, seed=seed + start))
    adv = torch.cat(adversarial) if adversarial else x
    return AttackOutcome(deployed_scores(module, x), deployed_scores(module, adv), adv)
