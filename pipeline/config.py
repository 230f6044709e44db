"""Run configuration: pydantic models with `extra="forbid"`, loaded from YAML, overridable.

A typo in a key is an error naming the key, never a silent default. The defaults are the
demo configuration, so `RunConfig()` trains something sensible on the demo data.
"""

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError

StrictSectionT = TypeVar("StrictSectionT", bound="StrictSection")


class StrictSection(BaseModel):
    """Base of every config section: an unknown key is an error, never a silent default."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(StrictSection):
    """Where the good images come from and how they are split."""

    path: str | None = Field(None, description="MVTec-layout folder; None = generated demo data.")
    image_size: int = Field(128, ge=32, le=1024)
    channels: Literal[1, 3] | None = Field(None, description="None = as the train images are.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Good images for early stopping.")
    calib_fraction: float = Field(
        0.25, gt=0, lt=0.6, description="Good images for map normalisation and the threshold."
    )

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "DataConfig":
        if self.val_fraction + self.calib_fraction >= 0.8:
            raise ValueError("val_fraction + calib_fraction must leave at least 20 % to train on")
        if self.image_size % 16:
            raise ValueError("image_size must be a multiple of 16")
        return self


class ModelConfig(StrictSection):
    """Architecture, looked up by `name` in the model registry."""

    name: str = "ae"
    width: int = Field(32, ge=4, le=256, description="Channels of the first encoder stage.")
    depth: int = Field(4, ge=2, le=6, description="Number of stride-2 stages.")
    latent_dim: int = Field(64, ge=2, le=2048)
    latent: Literal["spatial", "vector"] = "spatial"
    beta: float = Field(1.0, ge=0, description="VAE only: weight of the KL term.")
    disc_width: int = Field(16, ge=4, le=256, description="DRAEM only: first U-Net stage width.")
    disc_depth: int = Field(4, ge=2, le=6, description="DRAEM only: U-Net poolings.")
    focal_gamma: float = Field(2.0, ge=0, description="DRAEM only: focal loss exponent.")
    input_norm: Literal["none", "image"] = Field(
        "none",
        description="DRAEM only: 'image' standardises each image by its own mean and spread "
        "before both sub-networks, so dark and bright parts look alike to them.",
    )
    position_channels: bool = Field(
        False,
        description="DRAEM only: give the segmenting U-Net each pixel's row and column, so it "
        "can learn what is normal where (a part's rim looks unlike its middle).",
    )


class AugmentConfig(StrictSection):
    """One albumentations transform by class name, e.g. {name: HorizontalFlip, params: {p: 0.5}}."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class AnomalyConfig(StrictSection):
    """Synthetic anomalies (DRAEM recipe) for the families that learn from them, and for
    selecting any model on labelled synthetic defects of held-out good images."""

    clean_fraction: float = Field(0.5, ge=0, le=1, description="Training samples left clean.")
    opacity_min: float = Field(0.1, ge=0, le=1)
    opacity_max: float = Field(1.0, ge=0, le=1)
    max_exp: int = Field(6, ge=0, le=8, description="Perlin cells per axis up to 2**max_exp.")
    textures: str | None = Field(None, description="Optional folder of texture images.")
    shading: bool = Field(
        False,
        description="Also paste the part's own texture under a smooth gain change (uneven "
        "lighting, discolouration), with soft edges.",
    )
    cracks: bool = Field(
        False,
        description="Also paste thin wandering lines of the part's own texture, darker or "
        "brighter (cracks, scratches), which Perlin blobs do not resemble.",
    )
    bands: bool = Field(
        False,
        description="Also paste a band of the part's own texture, darker or brighter, running in "
        "from one edge to a sharp, nearly straight step (uneven grinding, a coating edge).",
    )

    @model_validator(mode="after")
    def _opacity_range(self) -> "AnomalyConfig":
        if self.opacity_min > self.opacity_max:
            raise ValueError("opacity_min must not exceed opacity_max")
        return self


class AdversarialConfig(StrictSection):
    """Adversarial training: PGD on the training objective within an L-inf ball."""

    eps: float = Field(0.0, ge=0, le=32, description="Budget in /255; 0 = off.")
    steps: int = Field(2, ge=1, le=20, description="PGD steps (step size eps / steps * 1.25).")


class TrainConfig(StrictSection):
    """The training loop: AdamW, cosine schedule, early stopping on held-out good images."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1, description="Epochs without val improvement before stopping.")
    ssim_weight: float = Field(0.5, ge=0, le=1, description="Share of (1-SSIM) in the loss.")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    augment: list[AugmentConfig] = Field(default_factory=list)
    anomalies: AnomalyConfig = Field(default_factory=AnomalyConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    epoch_images: int | None = Field(
        None,
        ge=1,
        description="Images per epoch; a smaller training split is repeated (reshuffled) up "
        "to this, so small datasets get enough steps. None = one pass.",
    )
    crop: int | None = Field(
        None,
        ge=16,
        description="Train on random square crops of this size: full resolution at the cost "
        "per step of a smaller input (the networks are fully convolutional). A crop at least "
        "as large as data.image_size trains on whole images.",
    )
    ema_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Judge, select and keep an exponential moving average of the weights "
        "(and BatchNorm statistics) with this decay per step; 0 = off. It smooths the "
        "epoch-to-epoch swings that make early stopping pick a lucky epoch.",
    )
    max_minutes: float | None = Field(
        None, gt=0, description="Stop after this much training time (the schedule still ends)."
    )
    channels_last: bool = Field(True, description="NHWC memory layout: faster convs on CPU/GPU.")
    amp: bool = Field(
        True,
        description="bfloat16 autocast for the training forward pass, on CUDA and on CPUs "
        "with native bfloat16 (ignored on other CPUs, which lack the bfloat16 kernels).",
    )
    compile: bool = Field(False, description="torch.compile the model for training.")
    loader_threads: int = Field(
        1,
        ge=0,
        le=16,
        description="Batch-building threads; 0 = inline; >1 breaks bit-exact "
        "reruns when `augment` is set (its random state is shared).",
    )


class ScoreConfig(StrictSection):
    """Which anomaly maps are fused, and how the image score is taken from the fused map."""

    maps: dict[Literal["l2", "ssim", "mahalanobis", "nll", "anomaly", "seg_mahalanobis"], float] = (
        Field(
            default_factory=lambda: {"l2": 1.0, "ssim": 1.0, "mahalanobis": 1.0},
            description="Map name -> fusion weight. 'mahalanobis': the encoder latent's Gaussian "
            "(all families); 'nll': the VAE's -log p(z); 'anomaly': DRAEM's segmentation; "
            "'seg_mahalanobis': a Gaussian of DRAEM's U-Net features over good parts.",
        )
    )
    smooth_sigma: float = Field(2.0, ge=0, description="Gaussian smoothing of the fused map (px).")
    image_score: Literal["max", "topk_mean"] = "max"
    topk: int = Field(16, ge=1, description="Pixels averaged for topk_mean.")
    fusion: Literal["fixed", "synthetic"] = Field(
        "fixed",
        description="fixed: the weights above; synthetic: choose among weight combinations of "
        "the listed maps by detection of synthetic defects on held-out good images.",
    )

    @model_validator(mode="after")
    def _some_map(self) -> "ScoreConfig":
        if not self.maps or all(w <= 0 for w in self.maps.values()):
            raise ValueError("score.maps needs at least one map with a positive weight")
        return self


class CalibrationConfig(StrictSection):
    """False-alarm budget of the operating point, and the budgets listed in the report."""

    alpha: float = Field(0.01, gt=0, lt=0.5)
    budgets: list[float] = Field(default_factory=lambda: [0.001, 0.005, 0.01, 0.02, 0.05, 0.1])


class DriftConfig(StrictSection):
    """How new batches are compared with the reference profile saved at training time."""

    alpha: float = Field(0.05, gt=0, lt=0.5, description="Family-wise false-alarm level.")
    components: int = Field(8, ge=1, le=64, description="PCA size of the pooled features.")
    permutations: int = Field(1000, ge=99, description="Permutations of the MMD test.")
    folds: int = Field(5, ge=2, le=10, description="Cross-validation folds of the classifier.")
    frames_shown: int = Field(8, ge=0, le=64, description="Most shifted frames in the report.")
    min_batch: int = Field(10, ge=3, description="Fewer readable frames is an error.")


class StressConfig(StrictSection):
    """The stress test: which perturbations and attacks, and on how many images."""

    perturbations: list[str] | None = Field(None, description="None = the whole suite.")
    severities: list[Literal["low", "medium", "high"]] = Field(
        default_factory=lambda: ["low", "medium", "high"]
    )
    eps: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0], description="L-inf budgets in /255."
    )
    steps: int = Field(10, ge=2, le=100, description="PGD steps (step size eps / 4).")
    check_steps: int = Field(20, ge=2, le=200, description="More steps for the sanity check.")
    sanity_tolerance: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="PGD is not monotone in its steps: a shortfall up to this share of the "
        "stronger attack's score movement is noise, beyond it a sign of masked gradients.",
    )
    topk: int = Field(16, ge=1, description="Pixels of the smooth top-k score attacked.")
    attack_images: int = Field(32, ge=2, description="Good and defective images attacked.")
    seed: int = 0


class TrackingConfig(StrictSection):
    """MLflow experiment and registered model names."""

    experiment: str = "aeinspect-demo"
    registered_model: str = "aeinspect-demo"


class ExportConfig(StrictSection):
    """The exported graph and the parity it must keep with the lab's torch module."""

    opset: int = Field(17, ge=17, le=21)
    input_layout: Literal["uint8_nhwc", "float_nchw"] = Field(
        "uint8_nhwc",
        description="uint8_nhwc: camera pixels go in as they are; float_nchw: [0, 1] planes.",
    )
    max_batch: int = Field(8, ge=1, le=256, description="Largest batch parity is checked at.")
    score_tolerance: float = Field(1e-3, gt=0, description="Largest |score difference| allowed.")
    map_tolerance: float = Field(1e-3, gt=0, description="Largest |map difference| allowed.")
    parity_images: int = Field(256, ge=1, description="Test images compared (evenly spaced).")


class RunConfig(StrictSection):
    """Everything one training run needs; recorded in full with the run."""

    name: str = "demo"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    stress: StressConfig = Field(default_factory=StressConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _positions_need_whole_images(self) -> "RunConfig":
        crops = self.train.crop is not None and self.train.crop < self.data.image_size
        if self.model.position_channels and crops:
            raise ValueError(
                "model.position_channels needs whole images: a train.crop smaller than "
                "data.image_size would tell the model wrong positions"
            )
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, for MLflow params."""
        return _flatten(self.model_dump(mode="json"))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{where}'"
    return f"{source}: {where}: {first['msg']}"


def _apply_override(tree: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.epochs=5")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: '{part}' is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def override_section(section: StrictSection, overrides: list[str], where: str) -> Any:
    """A copy of one config section with `key=value` overrides, validated as strictly."""
    tree = section.model_dump(mode="json")
    for assignment in overrides:
        _apply_override(tree, assignment)
    return validated(type(section), tree, where)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; ConfigError naming the file otherwise."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded or {}


def validated(model: type[StrictSectionT], tree: dict[str, Any], source: str) -> StrictSectionT:
    """`model` built from `tree`; the first problem as one ConfigError line naming `source`."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults), apply `key=value` overrides, validate strictly."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        tree = read_yaml_mapping(path)
    for assignment in overrides or []:
        _apply_override(tree, assignment)
    if overrides:
        source = f"{source} + --set"
    return validated(RunConfig, tree, source)
