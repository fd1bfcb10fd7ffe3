"""The service's checks on top of the spec's own validation (422 naming the field)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from rpg_core.catalog.datasets import dataset_info
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import AUTO_BATCH_RANGE, ExperimentSpec, resolve_train
from rpg_core.training.memory import FIXED_DATA, data_memory_bytes, data_shape, memory_error

from .settings import Settings

log = logging.getLogger(__name__)

__all__ = ["FIXED_DATA", "check_limits", "data_memory_bytes", "feasibility_errors", "limit_errors"]

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
    body = spec.model_dump(mode="json")
    # the usual answer in one pass: JSON writes a NUL of any key or value as \u0000 (a text
    # holding those six characters doubles its backslash and still matches: the walk decides)
    if "\\u0000" not in json.dumps(body) and not any(CONTROL.search(t) for t in spec.tags):
        return []
    errors = []
    for path, text in _strings(body, ""):
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
IMAGE_FOLDER_HELP = "<data root>/{name}/train/<class>/*.png|jpg and val/<class>/..."
MPII_FILE = "mpii_annotations.json"  # rpg_core.data.pose.MPII_FILE (a test keeps them equal)
MPII_HELP = "<data root>/{name}/" + MPII_FILE + " and <data root>/{name}/images/"
SCENES_HELP = "<data root>/{name}/train/{{rgb,depth,normal}}/<id>.png and val/..."


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
    elif name.startswith("mpii:"):
        folder = name.split(":", 1)[1]
        if not (
            _has_dir(root, folder)
            and _has_dir(root, folder, "images")
            and (root.resolve() / folder / MPII_FILE).is_file()
        ):
            return [
                (
                    "data.dataset",
                    f"{name}: no such dataset on this server; it needs "
                    + MPII_HELP.format(name=folder),
                )
            ]
    elif name.startswith("scenes:"):
        folder = name.split(":", 1)[1]
        if not (_has_dir(root, folder, "train") and _has_dir(root, folder, "val")):
            return [
                (
                    "data.dataset",
                    f"{name}: no such dataset on this server; it needs "
                    + SCENES_HELP.format(name=folder),
                )
            ]
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
    channels = data_shape(spec.data).channels
    if spec.prune is None and spec.model.in_channels not in (None, channels):
        found.append(
            (
                "model.in_channels",
                f"{spec.data.dataset} has {channels} channel{'s' if channels > 1 else ''}; "
                f"model.in_channels must be {channels} (or left out to take the dataset's)",
            )
        )
    if not found and spec.method is not None:  # the budget against the dense network
        resolved = _method_errors(spec, classes, channels)
        if isinstance(resolved, ExperimentSpec):
            spec = resolved  # the memory estimate of the width or ring the budget gives
        else:
            found += resolved
    if not found:  # the memory estimate builds the model: only for a spec that can run
        found += _memory_errors(spec, settings)
    return [{"field": f"{prefix}{f}", "message": m} for f, m in found]


def _method_errors(
    spec: ExperimentSpec, classes: int | None, channels: int
) -> ExperimentSpec | list[tuple[str, str]]:
    """``spec`` with its method's budget made concrete, or what refuses the budget (larger than
    the dense network, smaller than the method's minimum, below what prune-filters can leave):
    counted on the meta device."""
    from rpg_core.models.budget import resolve_method
    from rpg_core.models.factory import backbone_counter, filter_floor

    try:
        return resolve_method(spec, backbone_counter(classes, channels), filter_floor).spec
    except RPGConfigError as err:
        return [("method.budget", str(err).removeprefix("method.budget: "))]


def _memory_errors(spec: ExperimentSpec, settings: Settings) -> list[tuple[str, str]]:
    """The job's estimated peak memory (rpg_core.memory) over ``max_job_memory_bytes``."""
    try:
        over = memory_error(spec, settings.max_job_memory_bytes)
    except RPGConfigError as err:  # a model that cannot be built (the worker would fail too)
        return [("model", str(err))]
    except Exception:  # noqa: BLE001 - an estimate that fails never fails the request
        log.exception("memory estimate of %r failed; accepted unchecked", spec.name)
        return []
    return [over] if over is not None else []


WARM_UP_SPEC: dict[str, Any] = {
    "name": "warm-up",  # never stored: what warm_submission_path checks once per process
    "model": {"arch": "resnet18", "width": 0.25},
    "rpg": {"ring_size": 1000},
    "data": {"dataset": "digits"},
}


def warm_submission_path(settings: Settings) -> float:
    """Run a submission's checks once on :data:`WARM_UP_SPEC` before the process serves: the
    first submission of each API process otherwise pays torch's import and the memory
    estimate's first model (seconds; ``uvicorn --workers 4`` paid it four times, inside the
    first requests). Never fails: returns the seconds spent (logged)."""
    t = time.perf_counter()
    try:
        limit_errors(ExperimentSpec.model_validate(WARM_UP_SPEC), settings)
    except Exception:  # noqa: BLE001 - a warm-up that fails leaves the first request to pay
        log.exception("warming the submission path failed; the first submission pays for it")
    spent = time.perf_counter() - t
    log.info("submission path warmed in %.2f s (torch imported, first model estimated)", spent)
    return spent


def check_limits(spec: ExperimentSpec, settings: Settings) -> None:
    errors = limit_errors(spec, settings)
    if errors:
        raise HTTPException(422, detail=errors)


def check_devices(spec: ExperimentSpec, settings: Settings, session: Any) -> str | None:
    """``train.devices`` against the largest worker host recorded on the server's queue
    (``api.crud.workers``): more than it has is a 422 naming both; with no host recorded yet a
    data-parallel job is accepted and the returned note (stored as the queued run's status
    note) says what it waits for. None: nothing to say."""
    from .crud.workers import largest_host

    wanted = spec.train.devices
    if wanted <= 1:
        return None  # any worker will do: no query (a submission's round trips, issue 27)
    largest = largest_host(session, settings.dispatch_queue)
    session.rollback()
    if largest is None:
        return (
            f"waiting for a worker with {wanted} devices: no worker has recorded its devices on "
            f"queue {settings.dispatch_queue!r} yet (start one: rpg worker, docs/DEPLOY.md)"
        )
    if wanted > largest.devices:
        raise HTTPException(
            422,
            detail=[
                {
                    "field": "train.devices",
                    "message": f"{wanted} devices asked, but the largest worker seen has "
                    f"{largest.devices} ({largest.kind} on {largest.host}): lower train.devices "
                    f"to {largest.devices} or start a worker with more devices",
                }
            ],
        )
    return None
