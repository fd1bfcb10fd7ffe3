"""The experiment spec: one pydantic model shared by the CLI, the API and the worker.

A spec names everything by key (architecture, dataset, recipe), never by a path. Unknown fields
are rejected; every error names the field and what is allowed. ``task`` keeps the spec open to
other tasks than classification (pose estimation, multitask regression) later.

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
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .analysis.pruning import PruneSpec
from .exceptions import RPGConfigError

# Limits that keep a spec sane; the service may lower them through its settings.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_RING_SIZE = 2**31 - 1
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
DATASET_RE = re.compile(
    r"^(digits|fashion-mnist|synthetic|cifar10|cifar100|imagefolder:[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})$"
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    """Which network to build."""

    arch: str = Field("resnet18", description="registered architecture (rpg models)")
    variant: Literal["cifar", "imagenet"] = Field(
        "cifar", description="cifar: 3x3 stem, no maxpool; imagenet: 7x7 stem and maxpool"
    )
    width: float = Field(1.0, gt=0, le=16, description="channel width multiplier (1.0 = paper)")
    num_classes: int | None = Field(
        None, ge=1, le=100_000, description="classifier outputs; default: the dataset's"
    )
    in_channels: int | None = Field(
        None, ge=1, le=64, description="input channels; default: the dataset's"
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        from .models import list_models

        if v not in list_models():
            raise ValueError(f"unknown arch {v!r}; registered: {', '.join(list_models())}")
        return v


class RPGSpec(_Spec):
    """How the network's layers are generated from rings (omit for a plain network)."""

    ring_size: int | float = Field(
        ...,
        description="ring elements (int > 0), or a fraction in (0, 1] of the generated weights",
        examples=[45000, 0.05],
    )
    scope: Literal["global", "stage"] | dict[str, str] = Field(
        "global", description="global ring, one ring per stage, or {layer pattern: ring name}"
    )
    permute: bool = Field(True, description="random permutation in R_i (paper Fig. 5)")
    reflect: bool = Field(True, description="random sign reflection in R_i (paper Fig. 5)")
    seed: int = Field(0, ge=0, lt=2**63, description="seed of the generating matrices")
    include: list[str] | None = Field(None, description="layer-name patterns to generate")
    exclude: list[str] | None = Field(None, description="layer-name patterns to keep ordinary")
    linear: bool = Field(
        False,
        description="also generate Linear layers except the classifier head (a ResNet has none: "
        "to generate its head, add include: ['layer*', 'fc'])",
    )

    @field_validator("ring_size", mode="before")
    @classmethod
    def _ring_size(cls, v: Any) -> Any:
        msg = "must be a count (int > 0) or a fraction in (0, 1] of the generated weights"
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{msg}, got {v!r}")
        if isinstance(v, float) and v.is_integer() and v > 1:
            v = int(v)  # 45000.0 from a JSON client is a count
        if isinstance(v, int) and not 0 < v <= MAX_RING_SIZE:
            raise ValueError(f"{msg}; a count must be in 1..{MAX_RING_SIZE}, got {v}")
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError(f"{msg}; a fraction must be in (0, 1], got {v}")
        return v

    def rpgify_kwargs(self) -> dict[str, Any]:
        return self.model_dump()


class DataSpec(_Spec):
    """Which data, named by key (never a path)."""

    dataset: str = Field(
        "digits",
        description="digits | fashion-mnist | synthetic | cifar10 | cifar100 | imagefolder:<name>",
    )
    train_subset: int | None = Field(None, ge=1, description="use this many training images")
    val_subset: int | None = Field(None, ge=1, description="use this many validation images")
    image_size: int | None = Field(
        None, ge=8, le=1024, description="resize to this (default per dataset)"
    )
    augment: bool = Field(True, description="the paper's augmentation (crop+flip)")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    # synthetic only
    num_classes: int | None = Field(None, ge=2, le=10_000, description="synthetic: class count")
    num_train: int | None = Field(None, ge=1, le=1_000_000, description="synthetic: train images")
    num_val: int | None = Field(None, ge=1, le=1_000_000, description="synthetic: val images")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if not DATASET_RE.match(v):
            raise ValueError(
                f"unknown dataset {v!r}; use digits, fashion-mnist, synthetic, cifar10, "
                f"cifar100 or imagefolder:<name> (a folder name under the data root, no path)"
            )
        return v


class TrainSpec(_Spec):
    """Optimisation. Unset fields take the recipe's values (see ``RECIPES``)."""

    recipe: Literal["cifar", "imagenet"] = Field("cifar", description="the paper's presets")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="default: recipe's")
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    lr: float | None = Field(None, gt=0, le=100)
    momentum: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0, le=1)
    milestones: list[int] | None = Field(None, description="epochs where lr *= gamma")
    gamma: float | None = Field(None, gt=0, le=1)
    seed: int = Field(0, ge=0, lt=2**31, description="seed of init, shuffling, augmentation")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    deterministic: bool = Field(True, description="deterministic algorithms (CPU: bit-exact)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _milestones_sorted(self) -> TrainSpec:
        if self.milestones is not None and (
            any(m < 1 for m in self.milestones) or self.milestones != sorted(set(self.milestones))
        ):
            raise ValueError("milestones must be increasing positive epoch numbers")
        return self


RECIPES: dict[str, dict[str, Any]] = {
    # the paper, CIFAR: batch 128, SGD momentum 0.9, wd 5e-4, lr 0.1, x0.1 at 60/120/160 of 200
    "cifar": {
        "epochs": 200,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "milestones": [60, 120, 160],
        "gamma": 0.1,
    },
    # the paper, ImageNet: batch 256, wd 3e-5, lr 0.3, x0.1 every 75 epochs
    "imagenet": {
        "epochs": 300,
        "batch_size": 256,
        "lr": 0.3,
        "momentum": 0.9,
        "weight_decay": 3e-5,
        "milestones": [75, 150, 225],
        "gamma": 0.1,
    },
}


def resolve_train(train: TrainSpec) -> dict[str, Any]:
    """Concrete hyper-parameters: the recipe's, overridden by every field that is set.

    A run shorter than the recipe scales the recipe's milestones to its length.
    """
    recipe = RECIPES[train.recipe]
    out = {k: v for k, v in train.model_dump().items() if v is not None}
    for key, value in recipe.items():
        out.setdefault(key, value)
    if train.milestones is None and out["epochs"] != recipe["epochs"]:
        f = out["epochs"] / recipe["epochs"]
        out["milestones"] = sorted({max(1, round(m * f)) for m in recipe["milestones"]})
        out["milestones"] = [m for m in out["milestones"] if m < out["epochs"]]
    return out


class ExperimentSpec(_Spec):
    """One experiment: a model, its RPG, its data and its training."""

    name: str = Field("experiment", pattern=NAME_RE, description="a short label")
    task: Literal["classification"] = Field(
        "classification", description="the task (more come: pose, multitask regression)"
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

    @model_validator(mode="after")
    def _prune_job(self) -> ExperimentSpec:
        if self.prune is None:
            return self
        if self.rpg is not None:
            raise ValueError("prune: a pruning job takes its model from prune.source; omit rpg")
        if self.prune.finetune_epochs:
            raise ValueError(
                "prune.finetune_epochs: fine-tuning epochs of a pruning job are train.epochs; "
                "leave prune.finetune_epochs at 0"
            )
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
        field = cls.model_fields.get(part) if cls is not None and isinstance(part, str) else None
        cls = _model_in(field.annotation) if field is not None else None
    return list(cls.model_fields) if cls is not None else []


def _root_model(title: str) -> type[BaseModel] | None:
    if title == "SweepSpec":
        from .sweep import SweepSpec

        return SweepSpec
    found = globals().get(title)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def format_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: message``; a misspelled field gets the closest name."""
    lines = []
    root = model or _root_model(err.title)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and e["loc"]:
            valid = _valid_fields(root, tuple(e["loc"]))
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            if valid:
                msg += f" (valid fields: {', '.join(valid)})"
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
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise RPGConfigError(f"cannot read spec file {str(p)!r}: {err.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise RPGConfigError(f"spec file {str(p)!r} is not valid YAML/JSON: {err}") from None
    return parse_spec(data)


def json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`ExperimentSpec`."""
    return ExperimentSpec.model_json_schema()
