"""The datasets a spec's ``data.dataset`` can name, and every fact about each (torch-free).

This table is the one owner of those facts: the spec's name check (:data:`DATASET_RE`), each
task's datasets (:mod:`rpg_core.catalog.tasks`), the readers in :mod:`rpg_core.data`, the
service's submission checks (``api.validation``) and the demo read them here. Adding a dataset
is one entry below plus its reader (docs/ARCHITECTURE.md, "Adding a dataset").

A *named* dataset (``imagefolder:<name>``, ``mpii:<name>``, ``scenes:<name>``) is a folder under
the data root; its entry's key is the prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..exceptions import RPGConfigError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"  # a folder name under the data root, no path

Source = Literal["packaged", "files", "generated", "folder"]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: what it is, where it comes from, and its shape when that is fixed."""

    name: str  # the spec's name, or the prefix of a named folder ("imagefolder")
    task: str  # the task it serves (rpg_core.catalog.tasks)
    source: Source  # packaged: in a Python package; files: a fixed set of files; generated; folder
    description: str
    named: bool = False  # "<name>:<folder>" under the data root
    classes: int | None = None  # fixed class count (classification)
    channels: int | None = None  # image channels, when fixed
    image_size: int | None = None  # default image side in pixels (data.image_size overrides)
    source_size: int | None = None  # the side the files hold (Fashion-MNIST: 28, padded to 32)
    num_train: int | None = None  # fixed split sizes (generated sets: their defaults)
    num_val: int | None = None
    folder: str | None = None  # its folder under the data root
    system_dirs: tuple[str, ...] = ()  # folders a system package installs it to
    marker_files: tuple[str, ...] = ()  # any one of them present in a folder: it is installed
    install_hint: str = ""  # how to get it, for error messages

    @property
    def pattern(self) -> str:
        """A regex fragment for this dataset's names (fullmatch)."""
        return rf"{re.escape(self.name)}:{NAME_PATTERN}" if self.named else re.escape(self.name)

    @property
    def help(self) -> str:
        return f"{self.name}:<name>" if self.named else self.name

    @property
    def fixed_size(self) -> bool:
        """Its split sizes are facts of the dataset (not spec settings, not a folder's count)."""
        return self.source in ("packaged", "files")

    def installed_in(self, data_root: Path) -> Path | None:
        """The folder holding this dataset's files (the data root's first, then the system's),
        or None. Only for datasets with marker files."""
        dirs = ([data_root / self.folder] if self.folder else []) + [
            Path(d) for d in self.system_dirs
        ]
        for d in dirs:
            if any((d / f).is_file() for f in self.marker_files):
                return d
        return None


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "digits",
            "classification",
            "packaged",
            "scikit-learn's 8x8 handwritten digits, resized to 32x32",
            classes=10,
            channels=1,
            image_size=32,
            num_train=1437,
            num_val=360,
        ),
        DatasetInfo(
            "fashion-mnist",
            "classification",
            "files",
            "Fashion-MNIST: 60,000 train + 10,000 test images, 28x28 zero-padded to 32x32",
            classes=10,
            channels=1,
            image_size=32,
            source_size=28,
            num_train=60_000,
            num_val=10_000,
            folder="fashion-mnist",
            system_dirs=("/usr/share/datasets/fashion-mnist",),
            marker_files=("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
            install_hint="install the Debian package dataset-fashion-mnist or put the four IDX "
            "files in <data root>/fashion-mnist/",
        ),
        DatasetInfo(
            "synthetic",
            "classification",
            "generated",
            "seeded class-conditional images (a smooth mean image per class plus noise)",
            channels=3,
            image_size=32,
            num_train=1000,
            num_val=200,
        ),
        DatasetInfo(
            "cifar10",
            "classification",
            "files",
            "CIFAR-10 in its python format",
            classes=10,
            channels=3,
            image_size=32,
            num_train=50_000,
            num_val=10_000,
            folder="cifar-10-batches-py",
            install_hint="unpack cifar-10-python.tar.gz under the data root",
        ),
        DatasetInfo(
            "cifar100",
            "classification",
            "files",
            "CIFAR-100 in its python format (fine labels)",
            classes=100,
            channels=3,
            image_size=32,
            num_train=50_000,
            num_val=10_000,
            folder="cifar-100-python",
            install_hint="unpack cifar-100-python.tar.gz under the data root",
        ),
        DatasetInfo(
            "imagefolder",
            "classification",
            "folder",
            "an image folder: <data root>/<name>/train/<class>/*.png|jpg and val/<class>/...",
            named=True,
        ),
        DatasetInfo(
            "synthetic-pose",
            "pose",
            "generated",
            "person-centred articulated figures with clutter, occluders and visibility",
            channels=3,
        ),
        DatasetInfo(
            "mpii",
            "pose",
            "folder",
            "an MPII-style folder (the hourglass code's JSON) under the data root",
            named=True,
            channels=3,
        ),
        DatasetInfo(
            "synthetic-scenes",
            "multitask",
            "generated",
            "ray-cast rooms with exact depth and normals",
            channels=3,
        ),
        DatasetInfo(
            "scenes",
            "multitask",
            "folder",
            "an indoor-scene folder of RGB, depth and normal images under the data root",
            named=True,
            channels=3,
        ),
    )
}


def dataset_pattern(task: str | None = None) -> str:
    """A regex alternation of the dataset names of ``task`` (every task: None), for fullmatch."""
    return "|".join(d.pattern for d in DATASETS.values() if task is None or d.task == task)


def datasets_help(task: str | None = None) -> str:
    """``digits, fashion-mnist, ... or imagefolder:<name>``: the names of ``task``'s datasets."""
    names = [d.help for d in DATASETS.values() if task is None or d.task == task]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


# \Z, not $: "digits\n" must not match (``$`` also matches before a final newline)
DATASET_RE = re.compile(rf"^(?:{dataset_pattern()})\Z")


def dataset_info(name: str) -> DatasetInfo:
    """The entry of a spec's dataset name (``mpii:lsp`` -> the ``mpii`` entry)."""
    key = name.split(":", 1)[0] if ":" in name else name
    info = DATASETS.get(key)
    if info is None or info.named != (":" in name):
        raise RPGConfigError(f"unknown dataset {name!r}; use {datasets_help()}")
    return info


__all__ = [
    "DATASETS",
    "DATASET_RE",
    "NAME_PATTERN",
    "DatasetInfo",
    "dataset_info",
    "dataset_pattern",
    "datasets_help",
]
