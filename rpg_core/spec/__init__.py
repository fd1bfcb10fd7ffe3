"""The experiment spec: one pydantic model shared by the CLI, the API and the worker.

A spec names everything by key (architecture, dataset, recipe), never by a path. Unknown fields
are rejected; every error names the field and what is allowed. ``task`` (``classification``, the
default, ``pose`` or ``multitask``: :mod:`rpg_core.catalog.tasks`) picks the loss and the metrics, and
which architectures and datasets the spec may name.

Example (YAML)::

    name: r18-rpg-45k
    model: {arch: resnet18, variant: cifar}
    rpg: {ring_size: 45000, scope: global, permute: true, reflect: true, seed: 0}  # omit: plain
    data: {dataset: digits}
    train: {recipe: cifar, epochs: 15, batch_size: 128}
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..catalog.datasets import DATASET_RE, datasets_help
from ..catalog.tasks import DEFAULT_TASK, TASKS, check_task, list_tasks
from ..exceptions import RPGConfigError
from ..image_limits import MAX_IMAGE_SIZE
from .eval import KEY_RE, MAX_SEVERITY, SHIFTS, EvalSpec, OODSetSpec, ShiftName
from .method import PRUNING_METHODS, MethodSpec, check_method, method_rpg
from .model import (
    DEFAULT_STACKS,
    ENCDEC_BLOCKS,
    MAX_REPEATS,
    MAX_RING_SIZE,
    MAX_STACKS,
    RECURRENT_RPG_INCLUDE,
    RING_NAME_RE,
    SHARING_RPG_INCLUDE,
    ModelSpec,
    RecurrenceSpec,
    RPGSpec,
    recurrence_rpg,
    sharing_rpg,
)
from .train import (  # the train section and its recipes (re-exported: one spec module)
    AUTO_BATCH_LR_BATCH,
    AUTO_BATCH_RANGE,
    AUTO_BATCH_STEPS,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    OPTIMIZER_LR,
    OPTIMIZER_WEIGHT_DECAY,
    PRECISE_BN_STEPS,
    RECIPES,
    Recipe,
    Schedule,
    TrainSpec,
    auto_batch_lr_factor,
    auto_batch_size,
    resolve_train,
)

# Limits that keep a spec sane; the service may lower them through its settings.
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
MAX_PRUNE_FRACTION = 0.95
_RPG_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,250}\.rpg")  # always fullmatch


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = [
    "AUGMENT_AUTO_EPOCHS",
    "AUTO_BATCH_LR_BATCH",
    "AUTO_BATCH_RANGE",
    "AUTO_BATCH_STEPS",
    "DATASET_RE",
    "MAX_BATCH_SIZE",
    "MAX_EPOCHS",
    "MAX_PRUNE_FRACTION",
    "MAX_RING_SIZE",
    "NAME_RE",
    "OPTIMIZER_LR",
    "OPTIMIZER_WEIGHT_DECAY",
    "PRECISE_BN_STEPS",
    "RECIPES",
    "MAX_REPEATS",
    "RING_NAME_RE",
    "DataSpec",
    "EvalSpec",
    "KEY_RE",
    "MAX_SEVERITY",
    "OODSetSpec",
    "RECURRENT_RPG_INCLUDE",
    "SHIFTS",
    "ShiftName",
    "ExperimentSpec",
    "MethodSpec",
    "ModelSpec",
    "PruneSpec",
    "RecurrenceSpec",
    "RPGSpec",
    "Recipe",
    "Schedule",
    "TrainSpec",
    "auto_batch_lr_factor",
    "auto_batch_size",
    "field_hint",
    "format_validation_error",
    "json_schema",
    "load_spec",
    "parse_spec",
    "recurrence_rpg",
    "sharing_rpg",
    "DEFAULT_STACKS",
    "ENCDEC_BLOCKS",
    "MAX_STACKS",
    "SHARING_RPG_INCLUDE",
    "resolve_augment",
    "resolve_train",
]


AUGMENT_AUTO_EPOCHS = 10  # data.augment unset: augmentation from this many epochs on


class DataSpec(_Spec):
    """Which data, named by key (never a path)."""

    dataset: str = Field(
        "digits",
        description="classification: digits | fashion-mnist | synthetic | cifar10 | cifar100 | "
        "imagefolder:<name>; pose: synthetic-pose | mpii:<name>; multitask: synthetic-scenes | "
        "scenes:<name>",
    )
    train_subset: StrictInt | None = Field(None, ge=1, description="use this many training images")
    val_subset: StrictInt | None = Field(None, ge=1, description="use this many validation images")
    image_size: StrictInt | None = Field(
        None, ge=8, le=MAX_IMAGE_SIZE, description="resize to this (default per dataset)"
    )
    augment: StrictBool | None = Field(
        None,
        description="the paper's augmentation (random crop, flips except for digits); default "
        f"(null): on for runs of {AUGMENT_AUTO_EPOCHS} epochs or more, off for shorter ones, "
        "which it slows more than it regularises",
    )
    num_workers: StrictInt = Field(0, ge=0, le=64, description="DataLoader worker processes")
    # synthetic only
    num_classes: StrictInt | None = Field(
        None, ge=2, le=10_000, description="synthetic: class count"
    )
    num_train: StrictInt | None = Field(
        None, ge=1, le=1_000_000, description="synthetic: train images"
    )
    num_val: StrictInt | None = Field(None, ge=1, le=1_000_000, description="synthetic: val images")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if not DATASET_RE.fullmatch(v):
            by_task = "; ".join(f"{datasets_help(t)} ({t})" for t in list_tasks())
            raise ValueError(
                f"unknown dataset {v!r}; use {by_task}; <name> is a folder name under the data "
                f"root, no path"
            )
        return v


def resolve_augment(spec: ExperimentSpec) -> bool:
    """Whether a run augments its training images: ``data.augment``, or when unset, whether the
    run has ``AUGMENT_AUTO_EPOCHS`` epochs or more (measured: in 3-epoch runs augmentation
    costs 7 points on Fashion-MNIST and 20-40 on digits; docs/BENCHMARKS.md)."""
    if spec.data.augment is not None:
        return spec.data.augment
    return bool(resolve_train(spec.train)["epochs"] >= AUGMENT_AUTO_EPOCHS)


class PruneSpec(_Spec):
    """A pruning job (paper App. A): which trained run to prune and by how much; the pruned
    network is then fine-tuned for ``train.epochs`` with the train recipe."""

    source: int | str = Field(
        ..., description="the experiment id to prune, or a .rpg file name (no path)"
    )
    fraction: StrictFloat = Field(
        0.3, gt=0, le=MAX_PRUNE_FRACTION, description="share of backbone parameters to remove"
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "finetune_epochs" in data:
            raise ValueError(
                "prune.finetune_epochs was removed: a pruning job fine-tunes for train.epochs "
                "with the train recipe; delete prune.finetune_epochs and set train.epochs"
            )
        return data

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("source must be an experiment id (int >= 1) or a .rpg file name")
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"source: experiment ids start at 1, got {v}")
            return v
        if isinstance(v, str):
            if not _RPG_FILE.fullmatch(v):
                raise ValueError(
                    f"source {v!r} must be an experiment id or a bare file name ending in .rpg "
                    "(letters, digits, '_', '-', '.'; no directories)"
                )
            return v
        raise ValueError(f"source must be an int or a str, got {type(v).__name__}")


class ExperimentSpec(_Spec):
    """One experiment: a model, its RPG, its data and its training."""

    name: str = Field("experiment", pattern=NAME_RE, description="a short label")
    task: str = Field(
        DEFAULT_TASK,
        description="classification | pose | multitask (rpg tasks lists them); sets the "
        "datasets, architectures, loss and metrics a spec can use",
    )
    model: ModelSpec = Field(default_factory=ModelSpec)
    rpg: RPGSpec | None = Field(None, description="omit for a plain network")
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=32)
    prune: PruneSpec | None = Field(
        None,
        description="a pruning job (paper App. A): prune prune.source, then fine-tune it for "
        "train.epochs with the train recipe; model and rpg come from the source",
    )
    eval: EvalSpec = Field(
        default_factory=EvalSpec,
        description="extra evaluation: out-of-distribution test sets (eval.ood)",
    )
    method: MethodSpec | None = Field(
        None,
        description="shrink the network to a parameter budget by a method (issue 24): {name: "
        "rpg | width | hashed | prune-global | prune-filters, budget: backbone parameters or a fraction of the "
        "plain network's}; omit: the network as model and rpg describe it",
    )

    @model_validator(mode="before")
    @classmethod
    def _method_rpg(cls, data: Any) -> Any:
        """``method: rpg | hashed`` fills ``rpg.ring_size`` (and hashed's generator)."""
        if not isinstance(data, dict) or data.get("method") is None:
            return data
        model = data.get("model")
        if data.get("task", DEFAULT_TASK) != DEFAULT_TASK or (
            isinstance(model, dict) and model.get("recurrence") is not None
        ):
            return data  # _method_fits refuses the method, naming it
        try:
            method = MethodSpec.model_validate(data["method"])
        except ValidationError:
            return data  # the field's own validation reports it
        rpg = method_rpg(method, data.get("rpg"))
        return data if rpg is data.get("rpg") else {**data, "rpg": rpg}

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A pose or multitask spec that names no arch or dataset gets the task's."""
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            return data
        info = TASKS.get(data["task"])
        if info is None or info.archs is None:
            return data
        out = dict(data)
        model, dset = data.get("model"), data.get("data")
        if model is None:
            out["model"] = {"arch": info.archs[0]}
        elif isinstance(model, dict) and "arch" not in model:
            out["model"] = {**model, "arch": info.archs[0]}
        if dset is None:
            out["data"] = {"dataset": info.default_dataset}
        elif isinstance(dset, dict) and "dataset" not in dset:
            out["data"] = {**dset, "dataset": info.default_dataset}
        return out

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; use one of {', '.join(list_tasks())}")
        return v

    @field_validator("rpg")
    @classmethod
    def _recurrence_rpg(cls, v: RPGSpec | None, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if isinstance(model, ModelSpec) and model.resolved_sharing() is not None:
            if model.resolved_sharing() == "rpg":
                sharing_rpg(model, v)  # raises naming the field
            elif v is not None:
                raise ValueError(
                    f"sharing {model.resolved_sharing()} keeps each sub-network's own weights; "
                    f"use model.sharing rpg to generate them from rings, or omit rpg"
                )
            return v
        rec = model.recurrence if isinstance(model, ModelSpec) else None
        if rec is None:
            return v
        if rec.mode == "rpg":
            recurrence_rpg(rec, v)  # raises naming the field
        elif v is not None:
            raise ValueError(
                f"recurrence mode {rec.mode} keeps the block's own weights; use "
                f"model.recurrence.mode rpg to generate them from a ring, or omit rpg"
            )
        return v

    @model_validator(mode="after")
    def _task_fits(self) -> ExperimentSpec:
        check_task(self.task, dataset=self.data.dataset, arch=self.model.arch)
        if not TASKS[self.task].prune_and_ood and (self.prune is not None or self.eval.ood):
            able = ", ".join(t.name for t in TASKS.values() if t.prune_and_ood)
            raise ValueError(
                f"prune/eval.ood: task {self.task!r} has no pruning jobs or OOD sets yet "
                f"({able} only); remove prune and eval.ood"
            )
        return self

    @model_validator(mode="after")
    def _method_fits(self) -> ExperimentSpec:
        if self.method is None:
            return self
        if self.prune is not None:
            raise ValueError(
                "method: a pruning job (prune) takes its model from prune.source; use "
                "method.name prune-global or prune-filters to prune to a budget, or remove method"
            )
        if self.model.recurrence is not None or self.model.resolved_sharing() is not None:
            raise ValueError(
                "method: methods shrink a network without recurrence or stacked sub-networks "
                "(resnet18, resnet34 or a plugin classifier); remove model.recurrence, or "
                "method"
            )
        check_method(self.method, self.rpg)
        return self

    @model_validator(mode="after")
    def _devices_fit(self) -> ExperimentSpec:
        pruning = self.prune is not None or (
            self.method is not None and self.method.name in PRUNING_METHODS
        )
        if self.train.devices > 1 and pruning:
            raise ValueError(
                f"train.devices: {self.train.devices} devices train a network from scratch; "
                f"pruning (prune, or method prune-global / prune-filters) runs on one device: "
                f"set train.devices to 1"
            )
        return self

    @model_validator(mode="after")
    def _prune_job(self) -> ExperimentSpec:
        if self.prune is None:
            return self
        if self.rpg is not None:
            raise ValueError("prune: a pruning job takes its model from prune.source; omit rpg")
        return self


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _valid_fields(root: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model at ``loc[:-1]`` under ``root`` (empty if unknown)."""
    cls = root
    for part in loc[:-1]:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            continue  # a list index: the list's item model (already found) holds the fields
        field = cls.model_fields.get(part) if cls is not None and isinstance(part, str) else None
        cls = _model_in(field.annotation) if field is not None else None
    return list(cls.model_fields) if cls is not None else []


def _root_model(title: str) -> type[BaseModel] | None:
    found = globals().get(title)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def field_hint(loc: tuple[Any, ...], root: type[BaseModel] | None) -> str:
    """For an unknown field at ``loc``: ``; did you mean 'x'? (valid fields: ...)``, or ''."""
    valid = _valid_fields(root, loc)
    if not valid or not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid fields: {', '.join(valid)})"


def format_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: message``; a misspelled field gets the closest name."""
    lines = []
    root = model or _root_model(err.title)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and e["loc"]:
            msg += field_hint(tuple(e["loc"]), root)
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def parse_spec(data: dict[str, Any] | ExperimentSpec) -> ExperimentSpec:
    """Validate a dict into an :class:`ExperimentSpec`, raising RPGConfigError naming the field."""
    if isinstance(data, ExperimentSpec):
        return data
    if not isinstance(data, dict):
        raise RPGConfigError(f"a spec must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise RPGConfigError(f"invalid spec: {format_validation_error(err)}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a spec from a YAML or JSON file."""
    from .safe_yaml import RPGYAMLError, loads

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise RPGConfigError(f"cannot read spec file {str(p)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RPGConfigError(f"spec file {str(p)!r} is not UTF-8 text") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else loads(text)
    except (json.JSONDecodeError, RecursionError, RPGYAMLError) as err:
        raise RPGConfigError(f"spec file {str(p)!r} is not valid YAML/JSON: {err}") from None
    return parse_spec(data)


def json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`ExperimentSpec`."""
    return ExperimentSpec.model_json_schema()
