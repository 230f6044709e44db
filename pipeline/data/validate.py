"""Check an MVTec-layout dataset folder before a run, listing every problem at once.

A run that dies on image 900 of 1300 costs an hour; a list of all the broken files costs
seconds. `validate_dataset` and `scan_layout` share one folder walk, so the checker and the
reader always agree on which file belongs to which split.

Layout: `train/good`, `test/good`, `test/<defect>` and `ground_truth/<defect>/<stem>_mask.png`.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from data_contracts import DatasetLayout, DefectSplit
from pipeline.data.images import list_images, read_image, read_mask
from pipeline.errors import DataError, ImageReadError

TRAIN_GOOD = "train/good"
MASK_TAG = "_mask"
EMPTY_SPLIT = "split folder has no images"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, tied to the file or folder that a user has to fix."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class _Split:
    """One split folder (`train/good`, `test/<name>`) and its images, sorted by name."""

    folder: Path
    images: list[Path]


@dataclass(frozen=True)
class _Defect:
    """A `test/<defect>` split with the mask found for each image (None where missing)."""

    name: str
    split: _Split
    masks: list[Path | None]


@dataclass(frozen=True)
class _Tree:
    """What the walk found; `notes` are the problems that file names alone reveal."""

    root: Path
    train_good: _Split | None
    test_good: _Split | None
    defects: list[_Defect]
    notes: list[Problem]

    def test_splits(self) -> list[_Split]:
        splits = [self.test_good] if self.test_good else []
        return splits + [d.split for d in self.defects]

    def splits(self) -> list[_Split]:
        return ([self.train_good] if self.train_good else []) + self.test_splits()


@dataclass(frozen=True)
class _Seen:
    """What decoding one file told us; the pixels themselves are not kept."""

    height: int
    width: int
    channels: int
    any_set: bool


# --- the walk, shared by validate_dataset and scan_layout -------------------------------------


def _root_problem(root: Path) -> Problem | None:
    if not root.exists():
        return Problem(root, "dataset folder does not exist")
    if not root.is_dir():
        return Problem(root, "dataset path is not a folder")
    return None


def _subfolders(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def _listing(folder: Path, notes: list[Problem]) -> list[Path]:
    """Images in `folder`; anything else in it is noted, since every reader will skip it."""
    images = list_images(folder)
    for entry in sorted(set(folder.iterdir()) - set(images)):
        what = "a folder" if entry.is_dir() else "not an image file"
        notes.append(Problem(entry, f"{what} inside a split folder, ignored"))
    return images


def _split(folder: Path, notes: list[Problem]) -> _Split | None:
    return _Split(folder, _listing(folder, notes)) if folder.is_dir() else None


def _note_loose(folder: Path, split_names: set[str], notes: list[Problem]) -> None:
    """Entries of `train/`, `test/` or `ground_truth/` that are not split folders."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if not (entry.is_dir() and entry.name in split_names):
            notes.append(Problem(entry, f"not in a split folder of {folder.name}/, ignored"))


def _mask_index(folder: Path, notes: list[Problem]) -> dict[str, Path]:
    """Masks of one `ground_truth/<defect>` folder, keyed by the stem of their image."""
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for mask in _listing(folder, notes):
        stem = mask.stem.removesuffix(MASK_TAG)
        if stem == mask.stem:
            notes.append(Problem(mask, f"mask name does not end in {MASK_TAG}, ignored"))
        elif stem in index:
            notes.append(Problem(mask, f"a second mask for image {stem}, ignored"))
        else:
            index[stem] = mask
    return index


def _note_orphans(index: dict[str, Path], why: str, notes: list[Problem]) -> None:
    notes.extend(Problem(mask, f"mask without an image ({why})") for mask in index.values())


def _defect(root: Path, name: str, notes: list[Problem]) -> _Defect:
    folder = root / "test" / name
    split = _Split(folder, _listing(folder, notes))
    index = _mask_index(root / "ground_truth" / name, notes)
    masks = [index.pop(image.stem, None) for image in split.images]
    _note_orphans(index, f"no matching file in test/{name}", notes)
    return _Defect(name, split, masks)


def _walk(root: Path) -> _Tree:
    """Sort the files of an existing dataset folder into splits and pair defects with masks."""
    notes: list[Problem] = []
    test_names = _subfolders(root / "test")
    defect_names = test_names - {"good"}
    truth_names = _subfolders(root / "ground_truth")
    tree = _Tree(
        root=root,
        train_good=_split(root / TRAIN_GOOD, notes),
        test_good=_split(root / "test" / "good", notes),
        defects=[_defect(root, name, notes) for name in sorted(defect_names)],
        notes=notes,
    )
    for name in sorted(truth_names - defect_names):
        index = _mask_index(root / "ground_truth" / name, notes)
        _note_orphans(index, f"test/ has no defect folder {name}", notes)
    _note_loose(root / "train", {"good"}, notes)
    _note_loose(root / "test", test_names, notes)
    _note_loose(root / "ground_truth", truth_names, notes)
    return tree


def _train_problem(tree: _Tree) -> Problem | None:
    """The one split a run cannot do without: good images to learn from."""
    if tree.train_good is None:
        return Problem(tree.root / TRAIN_GOOD, "training split folder is missing")
    if not tree.train_good.images:
        return Problem(tree.train_good.folder, EMPTY_SPLIT)
    return None


# --- checks that need the pixels ---------------------------------------------------------------


def _look(path: Path, read: Callable[[Path], np.ndarray]) -> _Seen | Problem:
    """Fully decode one file: only a full decode finds a truncated one."""
    try:
        arr = read(path)
    except ImageReadError as exc:
        return Problem(path, exc.problem)
    channels = arr.shape[2] if arr.ndim == 3 else 1
    return _Seen(arr.shape[0], arr.shape[1], channels, bool(arr.any()))


def _decode_all(images: list[Path], masks: list[Path]) -> dict[Path, _Seen | Problem]:
    """Decode in threads: PIL releases the GIL while it decodes, so this scales with cores."""
    with ThreadPoolExecutor() as pool:
        looks = [
            *pool.map(_look, images, repeat(read_image)),
            *pool.map(_look, masks, repeat(read_mask)),
        ]
    return dict(zip([*images, *masks], looks, strict=True))


def _expected_channels(
    tree: _Tree, seen: dict[Path, _Seen], channels: int | None
) -> tuple[int | None, str]:
    if channels is not None:
        return channels, "as asked"
    train = tree.train_good.images if tree.train_good else []
    counts = Counter(seen[p].channels for p in train if p in seen)
    majority = counts.most_common(1)[0][0] if counts else None
    return majority, f"like most of {TRAIN_GOOD}"


def _channel_problems(
    tree: _Tree, seen: dict[Path, _Seen], channels: int | None
) -> Iterable[Problem]:
    expected, why = _expected_channels(tree, seen, channels)
    if expected is None:
        return
    for image in (p for split in tree.splits() for p in split.images):
        found = seen.get(image)
        if found and found.channels != expected:
            yield Problem(image, f"has {found.channels} channel(s), expected {expected} ({why})")


def _mask_problems(tree: _Tree, seen: dict[Path, _Seen]) -> Iterable[Problem]:
    for defect in tree.defects:
        for image, mask in zip(defect.split.images, defect.masks, strict=True):
            if mask is None:
                expected = f"ground_truth/{defect.name}/{image.stem}{MASK_TAG}.png"
                yield Problem(image, f"defect image without a mask (expected {expected})")
                continue
            found, pic = seen.get(mask), seen.get(image)
            if found and not found.any_set:
                yield Problem(mask, "mask is empty (no defect pixels)")
            if found and pic and (found.height, found.width) != (pic.height, pic.width):
                yield Problem(
                    mask,
                    f"mask is {found.width}x{found.height}, its image {image.name} is "
                    f"{pic.width}x{pic.height}",
                )


# --- public API --------------------------------------------------------------------------------


def validate_dataset(root: Path, *, channels: int | None = None) -> list[Problem]:
    """Every problem of the dataset at `root`, sorted by path; empty when it is fit to use.

    With `channels` None, images must have the channel count of most of `train/good`.
    """
    root = Path(root)
    if (fatal := _root_problem(root)) is not None:
        return [fatal]
    tree = _walk(root)
    problems = list(tree.notes)
    if (missing := _train_problem(tree)) is not None:
        problems.append(missing)
    problems += [Problem(s.folder, EMPTY_SPLIT) for s in tree.test_splits() if not s.images]
    images = [p for split in tree.splits() for p in split.images]
    masks = [m for d in tree.defects for m in d.masks if m is not None]
    looks = _decode_all(images, masks)
    problems += [look for look in looks.values() if isinstance(look, Problem)]
    seen = {path: look for path, look in looks.items() if isinstance(look, _Seen)}
    problems += _channel_problems(tree, seen, channels)
    problems += _mask_problems(tree, seen)
    return sorted(problems, key=lambda p: (str(p.path), p.problem))


def scan_layout(root: Path) -> DatasetLayout:
    """The dataset's files by split, without decoding any; see `validate_dataset` for checks.

    Raises DataError only when nothing can be trained: no folder, or no `train/good` images.
    """
    root = Path(root)
    if (fatal := _root_problem(root)) is not None:
        raise DataError(str(fatal))
    tree = _walk(root)
    if (missing := _train_problem(tree)) is not None:
        raise DataError(str(missing))

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return DatasetLayout(
        root=str(root),
        train_good=[rel(p) for p in tree.train_good.images],
        test_good=[rel(p) for p in tree.test_good.images] if tree.test_good else [],
        defects=[
            DefectSplit(
                name=d.name,
                images=[rel(p) for p in d.split.images],
                masks=[rel(m) if m else None for m in d.masks],
            )
            for d in tree.defects
        ],
    )
