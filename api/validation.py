"""The service's checks on top of the spec's own validation (422 naming the field)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from rpg_core.catalog.datasets import DATASETS, dataset_info
from rpg_core.spec import AUTO_BATCH_RANGE, DataSpec, ExperimentSpec, resolve_train

from .settings import Settings

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TAG_QUERY_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(str(k), f"{path}.{k}" if path else str(k))
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _text_errors(spec: ExperimentSpec, prefix: str) -> list[dict[str, str]]:
    """NUL anywhere, and control characters in tags (databases and logs cannot take them)."""
    errors = []
    for path, text in _strings(spec.model_dump(mode="json"), ""):
        bad = "\x00" in text or (path.startswith("tags") and CONTROL.search(text))
        if bad:
            errors.append(
                {"field": f"{prefix}{path}", "message": "control characters are not allowed"}
            )
    return errors


def limit_errors(
    spec: ExperimentSpec, settings: Settings, prefix: str = ""
) -> list[dict[str, str]]:
    """Each field of ``spec`` over a maximum of ``settings``, as {"field", "message"}."""
    errors = _text_errors(spec, prefix)
    rpg = spec.rpg
    if (
        rpg is not None
        and isinstance(rpg.ring_size, int)
        and rpg.ring_size > settings.max_ring_size
    ):
        errors.append(
            {
                "field": f"{prefix}rpg.ring_size",
                "message": f"at most {settings.max_ring_size} on this server",
            }
        )
    train = resolve_train(spec.train)
    if train["epochs"] > settings.max_epochs:
        errors.append(
            {
                "field": f"{prefix}train.epochs",
                "message": f"at most {settings.max_epochs} on this server",
            }
        )
    # the short recipe's batch size (None) is chosen by data size, at most AUTO_BATCH_RANGE's top
    if (train["batch_size"] or AUTO_BATCH_RANGE[1]) > settings.max_batch_size:
        errors.append(
            {
                "field": f"{prefix}train.batch_size",
                "message": f"at most {settings.max_batch_size} on this server",
            }
        )
    return errors + feasibility_errors(spec, settings, prefix)


# --- specs that can only fail: checked at submission ---------------------------------------
# in-memory datasets: (classes, channels, default image size, train images, val images)
# (the facts are rpg_core.catalog.datasets')
FIXED_DATA: dict[str, tuple[int, int, int, int, int]] = {
    d.name: (d.classes or 0, d.channels or 0, d.image_size or 0, d.num_train or 0, d.num_val or 0)
    for d in DATASETS.values()
    if d.fixed_size
}
IMAGE_FOLDER_HELP = "<data root>/{name}/train/<class>/*.png|jpg and val/<class>/..."


def data_memory_bytes(data: DataSpec) -> int | None:
    """Estimated peak memory of loading ``data`` (None: read lazily from files, not estimated).

    The loaders keep every image as uint8 and make float copies of the largest split (resizing,
    normalisation statistics; synthetic data draws three float tensors): about 1 + 12 bytes per
    pixel value of the largest split.
    """
    if data.dataset == "synthetic":
        channels, size = 3, data.image_size or 32
        n_train, n_val, floats = data.num_train or 1000, data.num_val or 200, 12
    elif data.dataset in FIXED_DATA:
        _, channels, default_size, n_train, n_val = FIXED_DATA[data.dataset]
        size, floats = data.image_size or default_size, 8
    else:
        return None
    pixels = channels * size * size
    return (n_train + n_val) * pixels + max(n_train, n_val) * pixels * floats


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def _has_dir(root: Path, *parts: str) -> bool:
    """``root/parts`` is a folder inside ``root`` (no symlink out of it)."""
    try:
        base = root.resolve()
        target = base.joinpath(*parts).resolve()
    except OSError:
        return False
    return target.is_relative_to(base) and target.is_dir()


def _image_folder_classes(root: Path, name: str) -> int | None:
    """Class folders of ``imagefolder:name`` (None: the train/ and val/ folders are missing)."""
    if not (_has_dir(root, name, "train") and _has_dir(root, name, "val")):
        return None
    try:
        return sum(1 for p in (root.resolve() / name / "train").iterdir() if p.is_dir())
    except OSError:
        return None


def _data_errors(spec: ExperimentSpec, settings: Settings) -> list[tuple[str, str]]:
    """(field, message) for data that is missing under the data root (names, never paths)."""
    data, root = spec.data, Path(settings.data_root)
    name = data.dataset
    if name.startswith("imagefolder:"):
        folder = name.split(":", 1)[1]
        classes = _image_folder_classes(root, folder)
        if classes is None:
            return [
                (
                    "data.dataset",
                    f"{name}: no such dataset on this server; it needs "
                    + IMAGE_FOLDER_HELP.format(name=folder),
                )
            ]
        if classes < 2:
            return [("data.dataset", f"{name}: train/ needs at least two class folders")]
    elif (info := dataset_info(name)).marker_files:
        if info.installed_in(root) is None:
            return [("data.dataset", f"{name} is not installed on this server")]
    elif info.source == "files" and info.folder and not _has_dir(root, info.folder):
        return [
            (
                "data.dataset",
                f"{name} is not installed on this server (<data root>/{info.folder}/)",
            )
        ]
    source = spec.prune.source if spec.prune is not None else None
    if isinstance(source, str) and not (root / "models" / source).is_file():
        return [("prune.source", f"no model file {source!r} under <data root>/models/")]
    return _ood_errors(spec, root)


def _ood_errors(spec: ExperimentSpec, root: Path) -> list[tuple[str, str]]:
    """eval.ood folders and class maps missing under the data root (their contents are checked
    by the worker before it trains)."""
    found: list[tuple[str, str]] = []
    for i, s in enumerate(spec.eval.ood):
        if s.folder is not None and not _has_dir(root, s.folder):
            found.append(
                (f"eval.ood.{i}.folder", f"no image folder {s.folder!r} on this server "
                 f"(<data root>/{s.folder}/<class>/*.jpg|png)")
            )  # fmt: skip
        if s.class_map is not None and not (
            _has_dir(root, "class-maps") and (root / "class-maps" / f"{s.class_map}.json").is_file()
        ):
            found.append(
                (f"eval.ood.{i}.class_map", f"no class map {s.class_map!r} on this server "
                 f"(<data root>/class-maps/{s.class_map}.json)")
            )  # fmt: skip
    return found


def _dataset_classes(spec: ExperimentSpec, settings: Settings) -> int | None:
    data = spec.data
    if data.dataset == "synthetic":
        return data.num_classes or 10
    if data.dataset in FIXED_DATA:
        return FIXED_DATA[data.dataset][0]
    if data.dataset.startswith("imagefolder:") and settings.check_data_on_submit:
        return _image_folder_classes(Path(settings.data_root), data.dataset.split(":", 1)[1])
    return None


def feasibility_errors(
    spec: ExperimentSpec, settings: Settings, prefix: str = ""
) -> list[dict[str, str]]:
    """What makes ``spec`` fail whatever the worker does, as {"field", "message"}."""
    found: list[tuple[str, str]] = []
    if settings.check_data_on_submit:
        found += _data_errors(spec, settings)
    classes = _dataset_classes(spec, settings)
    wanted = spec.model.num_classes
    if spec.prune is None and wanted is not None and classes is not None and wanted < classes:
        found.append(
            (
                "model.num_classes",
                f"{spec.data.dataset} has {classes} classes; model.num_classes must be at "
                f"least {classes} (or left out to take the dataset's)",
            )
        )
    need = data_memory_bytes(spec.data)
    if need is not None and need > settings.max_job_memory_bytes:
        found.append(
            (
                "data",
                f"loading this data needs about {_gib(need)} of memory; this server allows "
                f"{_gib(settings.max_job_memory_bytes)}: lower data.image_size, num_train, "
                "num_val or use train_subset/val_subset",
            )
        )
    return [{"field": f"{prefix}{f}", "message": m} for f, m in found]


def check_limits(spec: ExperimentSpec, settings: Settings) -> None:
    errors = limit_errors(spec, settings)
    if errors:
        raise HTTPException(422, detail=errors)
