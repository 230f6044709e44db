"""The training loop: AdamW, cosine schedule, early stopping on held-out good images.

Shaped like torchvision's reference scripts: `train_one_epoch`, `evaluate_loss`, and a
checkpoint dict {model, optimizer, lr_scheduler, epoch, ...} written every epoch so a killed
run resumes where it stopped. Checkpoints hold tensors and plain values only and are loaded
with `weights_only=True`: loading one never executes code.
"""

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.config import RunConfig
from pipeline.data.augment import augment_batch, build_augmentation
from pipeline.errors import ConfigError
from pipeline.models import Reconstructor, build_model
from pipeline.scoring import batches, to_tensor

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The best model (by validation loss) and how training went."""

    model: Reconstructor
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    seconds: float = 0.0
    device: str = "cpu"


def pick_device(setting: str) -> torch.device:
    """'auto' takes CUDA when present; asking for CUDA without it is an error, not a fallback."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_one_epoch(
    model: Reconstructor,
    optimizer: torch.optim.Optimizer,
    images: np.ndarray,
    cfg: RunConfig,
    rng: np.random.Generator,
    augment,
    device: torch.device,
) -> float:
    """One pass over shuffled, augmented training images; returns the mean loss."""
    model.train()
    order = rng.permutation(len(images))
    bs = cfg.train.batch_size
    total, count = 0.0, 0
    for start in range(0, len(order), bs):
        idx = order[start : start + bs]
        if len(idx) < 2 and count:  # a batch of one breaks BatchNorm statistics
            continue
        x = to_tensor(augment_batch(augment, images[idx])).to(device)
        out = model(x)
        loss, _ = model.loss(x, out, cfg.train.ssim_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def evaluate_loss(
    model: Reconstructor, images: np.ndarray, cfg: RunConfig, device: torch.device
) -> float:
    """Mean loss on held-out good images (eval mode, no augmentation)."""
    model.eval()
    total = 0.0
    for x in batches(images, cfg.train.batch_size):
        x = x.to(device)
        loss, _ = model.loss(x, model(x), cfg.train.ssim_weight)
        total += float(loss) * len(x)
    return total / max(len(images), 1)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-write never leaves a broken checkpoint


def train_model(
    cfg: RunConfig,
    fit_images: np.ndarray,
    val_images: np.ndarray,
    channels: int,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `cfg.model` on `fit_images`; resume from `checkpoint` when it exists."""
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    model = build_model(cfg.model, cfg.data.image_size, channels).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.train.epochs)
    build_augmentation(cfg.train.augment, cfg.train.seed)  # fail on a bad spec before any work
    result = TrainResult(model=model, device=str(device))
    best_state = copy.deepcopy(model.state_dict())
    start_epoch, stale = 0, 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        best_state = state["best_model"]
        start_epoch, stale = state["epoch"] + 1, state["stale"]
        result.best_epoch, result.best_val_loss = state["best_epoch"], state["best_val_loss"]
        result.history = state["history"]
        log.info("resuming from %s at epoch %d", checkpoint, start_epoch + 1)
    began = time.perf_counter()
    columns = [
        TextColumn("train {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(
            cfg.model.name, total=cfg.train.epochs, completed=start_epoch, info=""
        )
        for epoch in range(start_epoch, cfg.train.epochs):
            if stale >= cfg.train.patience:
                result.stopped_early = True
                break
            # a generator per epoch: resuming gives the same shuffles as an unbroken run
            rng = np.random.default_rng([cfg.train.seed, epoch])
            torch.manual_seed(cfg.train.seed * 1000 + epoch)
            augment = build_augmentation(cfg.train.augment, cfg.train.seed + epoch)
            train_loss = train_one_epoch(model, optimizer, fit_images, cfg, rng, augment, device)
            val_loss = evaluate_loss(model, val_images, cfg, device)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": optimizer.param_groups[0]["lr"],
            }
            scheduler.step()
            result.history.append(row)
            if val_loss < result.best_val_loss - 1e-6:
                result.best_val_loss, result.best_epoch, stale = val_loss, epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if checkpoint is not None:
                _save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": scheduler.state_dict(),
                        "epoch": epoch,
                        "stale": stale,
                        "best_model": best_state,
                        "best_epoch": result.best_epoch,
                        "best_val_loss": result.best_val_loss,
                        "history": result.history,
                    },
                )
            progress.update(task, advance=1, info=f"loss {train_loss:.4f} val {val_loss:.4f}")
            if on_epoch is not None:
                on_epoch(row)
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - began
    return result
