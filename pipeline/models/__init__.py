"""Model families, one module each, looked up by name through the registry."""

from pipeline.models import ae, draem, vae  # noqa: F401  (importing registers the families)
from pipeline.models.base import Reconstructor
from pipeline.models.registry import (
    available_models,
    build_model,
    check_model_config,
    register_model,
)

__all__ = [
    "Reconstructor",
    "available_models",
    "build_model",
    "check_model_config",
    "register_model",
]
