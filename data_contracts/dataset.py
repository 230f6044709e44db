"""Contract for an MVTec-style dataset folder, as found on disk by the reader."""

from pydantic import BaseModel, ConfigDict, Field


class DefectSplit(BaseModel):
    """One `test/<defect>` folder with its masks under `ground_truth/<defect>`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Defect type: the folder name under test/.")
    images: list[str] = Field(description="Image paths relative to the dataset root.")
    masks: list[str | None] = Field(
        description="Mask path per image (relative), or null where the mask is missing."
    )


class DatasetLayout(BaseModel):
    """The files of a dataset, split by role; paths are relative to `root`."""

    model_config = ConfigDict(extra="forbid")

    root: str
    train_good: list[str] = Field(min_length=1)
    test_good: list[str] = Field(default_factory=list)
    defects: list[DefectSplit] = Field(default_factory=list)

    @property
    def n_test(self) -> int:
        return len(self.test_good) + sum(len(d.images) for d in self.defects)
