"""The project's own exceptions: the CLI prints their message as one line and exits non-zero."""

from pathlib import Path


class InspectError(Exception):
    """Base of every error that a user can fix (bad input, bad config); never a bug of ours."""


class ConfigError(InspectError):
    """A config file or override is wrong: unknown key, bad value, unreadable YAML."""


class DataError(InspectError):
    """A dataset or an input folder is unusable as a whole (missing, empty split)."""


class ImageReadError(DataError):
    """One image or mask file cannot be used; names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class BundleError(InspectError):
    """A model bundle is missing files, or a file's hash does not match bundle.json."""


class TrackingError(InspectError):
    """MLflow cannot be reached or refused what we logged."""


class ExportError(InspectError):
    """The exported graph does not reproduce the lab's module, or cannot be written."""


class OrchestrationError(InspectError):
    """The Prefect server named by PREFECT_API_URL cannot be reached."""
