"""The training loop: AdamW, cosine schedule, early stopping on held-out good images.

Batches are built ahead on a worker thread (`PrefetchLoader`) and the share of time spent
waiting for them is logged per epoch with images/s; channels-last layout, bfloat16 autocast (on
CUDA and on CPUs with native bfloat16) and optional `torch.compile` are config switches.

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
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pipeline.config import RunConfig
from pipeline.data.augment import augment_batch, build_augmentation
from pipeline.data.loader import PrefetchLoader
from pipeline.data.synthetic import AnomalySynthesizer, build_synthesizer, synthesize_batch
from pipeline.errors import ConfigError
from pipeline.models import Reconstructor, build_model
from pipeline.scoring import batches, smooth, smoothing_kernel, to_tensor
from pipeline.selection import SyntheticSet, detection_quality, synthetic_validation_set
from pipeline.stress.hardening import adversarial_inputs

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The best model (by validation objective) and how training went."""

    model: Reconstructor
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = float("inf")  # the validation objective, lower is better
    stopped_early: bool = False
    seconds: float = 0.0
    device: str = "cpu"
    bf16_autocast: bool = False  # whether the training forward pass ran under bfloat16 autocast

    def mean_of(self, key: str) -> float | None:
        """Mean of a per-epoch figure (e.g. images_per_s, data_wait_share) over the history."""
        values = [row[key] for row in self.history if key in row]
        return sum(values) / len(values) if values else None


def pick_device(setting: str) -> torch.device:
    """'auto' takes CUDA when present; asking for CUDA without it is an error, not a fallback."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def bf16_autocast_pays(device: torch.device) -> bool:
    """Whether bfloat16 autocast speeds up training here: on CUDA, and on CPUs whose oneDNN has
    native bfloat16 (AVX512-BF16 or AMX; the DRAEM loop went from 24 to 32 images/s on such a
    2-core CPU). Other CPUs lack the bfloat16 kernels, so there it stays off."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_order(rng: np.random.Generator, n: int, epoch_images: int | None) -> np.ndarray:
    """Image indices of one epoch: a shuffle of all n, repeated (each pass reshuffled) until
    `epoch_images`, so a small dataset still gets enough steps per epoch for the schedule."""
    passes = [rng.permutation(n)]
    while epoch_images is not None and sum(map(len, passes)) < epoch_images:
        passes.append(rng.permutation(n))
    order = np.concatenate(passes)
    return order[: max(n, epoch_images or 0)]


@dataclass
class TrainBatch:
    """Model input, reconstruction target and (for synthetic anomalies) the anomaly mask."""

    inputs: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor | None


class BatchMaker:
    """Builds one epoch's batches: photometric augmentation, then synthetic anomalies for the
    families that learn from them. Deterministic per (seed, epoch, image index)."""

    def __init__(
        self,
        images: np.ndarray,
        order: np.ndarray,
        cfg: RunConfig,
        epoch: int,
        synthesizer: AnomalySynthesizer | None,
        channels_last: bool,
    ) -> None:
        self.images, self.order = images, order
        self.epoch, self.synthesizer = epoch, synthesizer
        self.seed, self.crop = cfg.train.seed, cfg.train.crop
        self.augment = build_augmentation(cfg.train.augment, cfg.train.seed + epoch)
        self.layout = torch.channels_last if channels_last else torch.contiguous_format

    def _crops(self, images: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """One random square crop per image, placed by (seed, epoch, position)."""
        size, full = self.crop, images.shape[1]
        if size is None or size >= full:
            return images
        out = []
        for image, i in zip(images, idx, strict=True):
            y, x = np.random.default_rng([self.seed, self.epoch, int(i), 1]).integers(
                0, full - size + 1, 2
            )
            out.append(image[y : y + size, x : x + size])
        return np.stack(out)

    def __call__(self, positions: np.ndarray) -> TrainBatch:
        """Batch of the images at `positions` in the epoch's order; the positions (unique even
        when a small set is repeated within an epoch) key the crops and anomalies."""
        images = self.images[self.order[positions]]
        clean = self._crops(augment_batch(self.augment, images), positions)
        target = to_tensor(clean).contiguous(memory_format=self.layout)
        if self.synthesizer is None:
            return TrainBatch(target, target, None)
        anomalous, masks, _ = synthesize_batch(self.synthesizer, clean, positions, self.epoch)
        inputs = to_tensor(anomalous).contiguous(memory_format=self.layout)
        return TrainBatch(inputs, target, torch.from_numpy(masks)[:, None])


def train_one_epoch(
    model: Reconstructor,
    optimizer: torch.optim.Optimizer,
    loader: PrefetchLoader[TrainBatch],
    cfg: RunConfig,
    device: torch.device,
    ema: AveragedModel | None = None,
    bf16: bool = False,
) -> dict[str, float]:
    """One pass over the loader (updating `ema` after every step, the forward pass under
    bfloat16 autocast if `bf16`); returns the mean loss, images/s and the data-wait share."""
    model.train()
    adversarial = cfg.train.adversarial
    total, count = 0.0, 0
    began = time.perf_counter()
    for batch in loader:
        inputs = batch.inputs.to(device, non_blocking=True)
        target = batch.target.to(device, non_blocking=True)
        mask = batch.mask.to(device, non_blocking=True) if batch.mask is not None else None
        if adversarial.eps > 0:
            inputs = adversarial_inputs(
                model,
                inputs,
                target,
                mask,
                adversarial.eps / 255,
                adversarial.steps,
                cfg.train.ssim_weight,
            )
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(inputs)
        # the loss in float32: SSIM's variances cancel badly in bfloat16
        out = {name: value.float() for name, value in out.items()}
        loss, _ = model.loss(target, out, cfg.train.ssim_weight, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        total += float(loss.detach()) * len(inputs)
        count += len(inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = max(time.perf_counter() - began, 1e-9)
    return {
        "train_loss": total / max(count, 1),
        "images_per_s": count / seconds,
        "data_wait_share": loader.wait_seconds / seconds,
    }


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


@torch.no_grad()
def evaluate_synthetic(
    model: Reconstructor, sset: SyntheticSet, cfg: RunConfig, device: torch.device
) -> dict[str, float]:
    """Detection of synthetic defects by the model's own anomaly map, smoothed as scoring does."""
    model.eval()
    kernel = smoothing_kernel(cfg.score.smooth_sigma).to(device)
    scores, maps = [], []
    for x in batches(sset.images, cfg.train.batch_size):
        m = smooth(model.anomaly_map(model(x.to(device))).float(), kernel)
        scores.append(m.flatten(1).max(dim=1).values.cpu().numpy())
        maps.append(m[:, 0].cpu().numpy())
    return detection_quality(sset, np.concatenate(scores), np.concatenate(maps))


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
    """Train `cfg.model` on `fit_images`; resume from `checkpoint` when it exists.

    The validation objective (lower is better) is the loss on held-out good images, or, for
    families that segment synthetic anomalies, 1 - mean(image, pixel AUROC) on synthetic
    defects of those images: their loss says little about how well they find defects.
    """
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    model = build_model(cfg.model, cfg.data.image_size, channels).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.train.compile else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.train.epochs)
    ema = None
    if cfg.train.ema_decay > 0:
        ema_fn = get_ema_multi_avg_fn(cfg.train.ema_decay)
        ema = AveragedModel(model, multi_avg_fn=ema_fn, use_buffers=True)
    judged = ema.module if ema is not None else model  # the weights validated and kept
    build_augmentation(cfg.train.augment, cfg.train.seed)  # fail on a bad spec before any work
    synthesizer, sset = None, None
    if model.uses_synthetic_anomalies:
        synthesizer = build_synthesizer(cfg.train.anomalies, seed=cfg.train.seed)
        sset = synthetic_validation_set(val_images, cfg.train.anomalies, cfg.train.seed)
    result = TrainResult(
        model=model,
        device=str(device),
        bf16_autocast=cfg.train.amp and bf16_autocast_pays(device),
    )
    best_state = copy.deepcopy(judged.state_dict())
    start_epoch, stale, spent = 0, 0, 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        best_state = state["best_model"]
        start_epoch, stale, spent = state["epoch"] + 1, state["stale"], state["seconds"]
        result.best_epoch, result.best_val = state["best_epoch"], state["best_val"]
        result.history = state["history"]
        log.info("resuming from %s at epoch %d", checkpoint, start_epoch + 1)
    began = time.perf_counter() - spent
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
            if cfg.train.max_minutes and time.perf_counter() - began > 60 * cfg.train.max_minutes:
                result.stopped_early = True
                break
            # a generator per epoch: resuming gives the same shuffles as an unbroken run
            rng = np.random.default_rng([cfg.train.seed, epoch])
            torch.manual_seed(cfg.train.seed * 1000 + epoch)
            order = epoch_order(rng, len(fit_images), cfg.train.epoch_images)
            make = BatchMaker(fit_images, order, cfg, epoch, synthesizer, cfg.train.channels_last)
            loader = PrefetchLoader(
                make,
                np.arange(len(order)),
                cfg.train.batch_size,
                threads=cfg.train.loader_threads,
            )
            row: dict[str, float] = {"epoch": epoch + 1}
            row.update(
                train_one_epoch(
                    step_model, optimizer, loader, cfg, device, ema, result.bf16_autocast
                )
            )
            row["val_loss"] = evaluate_loss(judged, val_images, cfg, device)
            objective = row["val_loss"]
            if sset is not None:
                quality = evaluate_synthetic(judged, sset, cfg, device)
                row["val_synthetic_image_auroc"] = quality["image_auroc"]
                row["val_synthetic_pixel_auroc"] = quality["pixel_auroc"]
                objective = 1.0 - quality["objective"]
            row["val_objective"] = objective
            row["lr"] = optimizer.param_groups[0]["lr"]
            scheduler.step()
            result.history.append(row)
            if objective < result.best_val - 1e-6:
                result.best_val, result.best_epoch, stale = objective, epoch + 1, 0
                best_state = copy.deepcopy(judged.state_dict())
            else:
                stale += 1
            if checkpoint is not None:
                _save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": scheduler.state_dict(),
                        "ema": ema.state_dict() if ema is not None else None,
                        "epoch": epoch,
                        "stale": stale,
                        "seconds": time.perf_counter() - began,
                        "best_model": best_state,
                        "best_epoch": result.best_epoch,
                        "best_val": result.best_val,
                        "history": result.history,
                    },
                )
            progress.update(
                task,
                advance=1,
                info=f"loss {row['train_loss']:.4f} val {objective:.4f} "
                f"{row['images_per_s']:.0f} img/s",
            )
            if on_epoch is not None:
                on_epoch(row)
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - began
    return result
