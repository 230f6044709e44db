"""Name -> factory registry, so configs name a model family and new ones plug in by decorator."""

from collections.abc import Callable

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError
from pipeline.models.base import Reconstructor

Factory = Callable[[ModelConfig, int, int], Reconstructor]
_REGISTRY: dict[str, Factory] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make `factory(cfg, image_size, channels)` buildable as `model.name: <name>`."""

    def add(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = factory
        return factory

    return add


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def check_model_config(cfg: ModelConfig, image_size: int) -> Factory:
    """The factory for `cfg.name`; unknown names and sizes the network cannot halve `depth`
    times are config errors, found before any data is read."""
    try:
        factory = _REGISTRY[cfg.name]
    except KeyError:
        known = ", ".join(available_models())
        raise ConfigError(f"unknown model '{cfg.name}' (known: {known})") from None
    if image_size % (2**cfg.depth):
        raise ConfigError(f"image_size {image_size} is not divisible by 2^depth = {2**cfg.depth}")
    return factory


def build_model(cfg: ModelConfig, image_size: int, channels: int) -> Reconstructor:
    """Instantiate the family named in the config."""
    return check_model_config(cfg, image_size)(cfg, image_size, channels)
