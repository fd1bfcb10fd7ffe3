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

from ._registry import list_models, supports_recurrence
from .exceptions import RPGConfigError
from .recipes import (  # the train section and its recipes (re-exported: one spec module)
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
    auto_batch_size,
    resolve_train,
)

# Limits that keep a spec sane; the service may lower them through its settings.
MAX_RING_SIZE = 2**31 - 1
MAX_REPEATS = 8  # model.recurrence.repeats
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
# \Z, not $: "digits\n" must not match (``$`` also matches before a final newline)
DATASET_RE = re.compile(
    r"^(digits|fashion-mnist|synthetic|cifar10|cifar100|imagefolder:[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})\Z"
)
RING_NAME_RE = r"^[A-Za-z0-9_\-]{1,64}$"  # pydantic's patterns: $ is the end of the text
MAX_PRUNE_FRACTION = 0.95
_RPG_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,250}\.rpg")  # always fullmatch


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = [
    "AUGMENT_AUTO_EPOCHS",
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
    "ExperimentSpec",
    "ModelSpec",
    "PruneSpec",
    "RecurrenceSpec",
    "RPGSpec",
    "Recipe",
    "Schedule",
    "TrainSpec",
    "auto_batch_size",
    "field_hint",
    "format_validation_error",
    "json_schema",
    "load_spec",
    "parse_spec",
    "recurrence_rpg",
    "resolve_augment",
    "resolve_train",
]


class RecurrenceSpec(_Spec):
    """How a recurrent architecture (``mdeq``) applies its block (paper Table 1)."""

    mode: Literal["shared", "rpg", "equilibrium"] = Field(
        ...,
        description="shared: the same block weights (convs and batchnorms) applied `repeats` "
        "times; rpg: `repeats` applications whose convs are generated from one ring (default "
        "size: one block's conv weights), each with its own permutation and signs, batchnorms "
        "per application; equilibrium: the block's fixed point by a solver, implicit gradient",
    )
    repeats: StrictInt = Field(
        1,
        ge=1,
        le=MAX_REPEATS,
        description="applications of the block (shared, rpg); equilibrium: must stay 1 (the "
        "solver decides the depth)",
    )
    norms: Literal["tied", "per_application"] = Field(
        "tied",
        description="shared: tied, the batchnorms are tied with the convs (plain weight tying); "
        "per_application, each application has its own batchnorms over the tied convs (as rpg "
        "has: the same parameter count as rpg). rpg: always per application",
    )
    solver: Literal["anderson", "broyden", "fixed_point_iter"] = Field(
        "anderson", description="equilibrium: the forward and backward fixed-point solver"
    )
    max_iter: StrictInt = Field(
        30, ge=1, le=500, description="equilibrium: forward solver iterations at most"
    )
    tol: StrictFloat = Field(
        1e-3, gt=0, lt=1, description="equilibrium: forward stop at this relative residual"
    )
    backward_max_iter: StrictInt = Field(
        30, ge=1, le=500, description="equilibrium: implicit-gradient solver iterations at most"
    )
    backward_tol: StrictFloat = Field(
        1e-4, gt=0, lt=1, description="equilibrium: implicit-gradient relative residual"
    )

    @model_validator(mode="after")
    def _equilibrium_once(self) -> RecurrenceSpec:
        if self.mode == "equilibrium" and self.repeats != 1:
            raise ValueError(
                f"repeats: equilibrium finds the fixed point of one block (the solver decides "
                f"the depth); leave repeats at 1, got {self.repeats}"
            )
        if self.mode == "equilibrium" and self.norms != "tied":
            raise ValueError("norms: equilibrium has one block and one set of norms; omit norms")
        return self


class ModelSpec(_Spec):
    """Which network to build."""

    arch: str = Field("resnet18", description="registered architecture (rpg models)")
    variant: Literal["cifar", "imagenet"] = Field(
        "cifar", description="cifar: 3x3 stem, no maxpool; imagenet: 7x7 stem and maxpool"
    )
    width: StrictFloat = Field(
        1.0, gt=0, le=16, description="channel width multiplier (1.0 = paper)"
    )
    num_classes: StrictInt | None = Field(
        None, ge=1, le=100_000, description="classifier outputs; default: the dataset's"
    )
    in_channels: StrictInt | None = Field(
        None, ge=1, le=64, description="input channels; default: the dataset's"
    )
    recurrence: RecurrenceSpec | None = Field(
        None,
        description="how a recurrent architecture (mdeq) applies its block: {mode: shared | rpg "
        "| equilibrium, repeats: K, solver knobs}; omit: one application",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        if v not in list_models():
            raise ValueError(f"unknown arch {v!r}; registered: {', '.join(list_models())}")
        return v

    @field_validator("recurrence")
    @classmethod
    def _recurrent_arch(cls, v: RecurrenceSpec | None, info: ValidationInfo) -> Any:
        arch = info.data.get("arch")
        if v is not None and isinstance(arch, str) and not supports_recurrence(arch):
            raise ValueError(
                f"arch {arch!r} does not apply a block repeatedly; use arch mdeq or remove "
                f"model.recurrence"
            )
        return v


class RPGSpec(_Spec):
    """How the network's layers are generated from rings (omit for a plain network)."""

    ring_size: int | float = Field(
        ...,
        description="ring elements (int > 0), or a fraction in (0, 1] of the generated weights",
        examples=[45000, 0.05],
    )
    scope: Literal["global", "stage"] | dict[str, Annotated[str, Field(pattern=RING_NAME_RE)]] = (
        Field(
            "global", description="global ring, one ring per stage, or {layer pattern: ring name}"
        )
    )
    permute: StrictBool = Field(True, description="random permutation in R_i (paper Fig. 5)")
    reflect: StrictBool = Field(True, description="random sign reflection in R_i (paper Fig. 5)")
    seed: StrictInt = Field(0, ge=0, lt=2**63, description="seed of the generating matrices")
    include: list[str] | None = Field(None, description="layer-name patterns to generate")
    exclude: list[str] | None = Field(None, description="layer-name patterns to keep ordinary")
    linear: StrictBool = Field(
        False,
        description="also generate Linear layers except the classifier head (a ResNet has none: "
        "to generate its head, add include: ['layer*', 'fc'])",
    )
    generator: Literal[1, 2] = Field(
        2,
        description="index generator: 2, keyed bijection (fast); 1, the sort-based generator "
        "of rings made before 2026-11-27 (kept so their files and checkpoints rebuild exactly)",
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
        kw = self.model_dump()
        kw["generator_version"] = kw.pop("generator")
        return kw


RECURRENT_RPG_INCLUDE = ["blocks.*"]  # the layers a recurrence rpg ring generates


def recurrence_rpg(recurrence: RecurrenceSpec, rpg: RPGSpec | None) -> RPGSpec:
    """The ring of ``recurrence.mode: rpg``: ``rpg`` (or, when omitted, a ring the size of one
    block: ``ring_size = 1 / repeats`` of the generated weights) over the block's convs only.
    Raises ValueError naming the ``rpg`` field that makes no sense with recurrence."""
    if rpg is None:
        return RPGSpec(ring_size=1.0 / recurrence.repeats, include=list(RECURRENT_RPG_INCLUDE))
    if rpg.scope != "global":
        raise ValueError(
            "scope: recurrence mode rpg generates every application of the block from one "
            f"ring; use scope global (or omit rpg for a ring of one block), got {rpg.scope!r}"
        )
    if rpg.include not in (None, RECURRENT_RPG_INCLUDE) or rpg.exclude is not None or rpg.linear:
        raise ValueError(
            "include/exclude/linear: recurrence mode rpg generates the block's convs "
            f"({RECURRENT_RPG_INCLUDE}); leave include, exclude and linear unset"
        )
    return rpg.model_copy(update={"include": list(RECURRENT_RPG_INCLUDE)})


AUGMENT_AUTO_EPOCHS = 10  # data.augment unset: augmentation from this many epochs on


class DataSpec(_Spec):
    """Which data, named by key (never a path)."""

    dataset: str = Field(
        "digits",
        description="digits | fashion-mnist | synthetic | cifar10 | cifar100 | imagefolder:<name>",
    )
    train_subset: StrictInt | None = Field(None, ge=1, description="use this many training images")
    val_subset: StrictInt | None = Field(None, ge=1, description="use this many validation images")
    image_size: StrictInt | None = Field(
        None, ge=8, le=1024, description="resize to this (default per dataset)"
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
            raise ValueError(
                f"unknown dataset {v!r}; use digits, fashion-mnist, synthetic, cifar10, "
                f"cifar100 or imagefolder:<name> (a folder name under the data root, no path)"
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


ShiftName = Literal[
    "rotation",
    "gaussian_blur",
    "gaussian_noise",
    "contrast",
    "inversion",
    "occlusion",
    "translation",
]
SHIFTS: tuple[str, ...] = get_args(ShiftName)  # the built-in shifts (rpg_core.ood, docs/OOD.md)
MAX_SEVERITY = 5
KEY_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"  # a name under the data root, never a path


class OODSetSpec(_Spec):
    """One out-of-distribution test set: a built-in shift of the validation set at named
    severities (``shift``), or an image folder under the data root (``folder`` + ``class_map``).
    Severity parameters: docs/OOD.md."""

    shift: ShiftName | None = Field(
        None,
        description="a built-in shift of the run's validation images, applied before "
        "normalisation: " + ", ".join(SHIFTS),
    )
    severities: list[Annotated[StrictInt, Field(ge=0, le=MAX_SEVERITY)]] | None = Field(
        None,
        description=f"shift: the severities to score, 0 (identity) to {MAX_SEVERITY}; default 1..5",
    )
    seed: StrictInt = Field(
        0, ge=0, lt=2**31, description="shift: seed of the per-image random draws"
    )
    folder: str | None = Field(
        None,
        pattern=KEY_RE,
        description="an image folder under the data root by name (<root>/<folder>/<class>/*.jpg), "
        "never a path",
    )
    class_map: str | None = Field(
        None,
        pattern=KEY_RE,
        description="folder: the class map <root>/class-maps/<class_map>.json, a JSON object "
        "{folder class: training class name or index, or a list of them}",
    )
    max_images: StrictInt | None = Field(
        None, ge=1, le=1_000_000, description="score at most this many images (a seeded subset)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> OODSetSpec:
        if (self.shift is None) == (self.folder is None):
            raise ValueError(
                "an eval.ood entry names exactly one of shift (a built-in shift) or folder "
                "(an image folder under the data root)"
            )
        if self.folder is not None and self.class_map is None:
            raise ValueError(
                f"folder {self.folder!r} needs class_map: the name of a JSON file "
                f"<data root>/class-maps/<name>.json mapping its classes to the training classes"
            )
        if self.shift is not None and (self.class_map is not None):
            raise ValueError("class_map applies to folder entries only; remove it")
        if self.folder is not None and self.severities is not None:
            raise ValueError("severities apply to shift entries only; remove them")
        if self.severities is not None and (
            not self.severities or len(set(self.severities)) != len(self.severities)
        ):
            raise ValueError("severities must be a non-empty list without repeats, e.g. [1, 3, 5]")
        return self

    @property
    def levels(self) -> list[int]:
        return list(self.severities) if self.severities is not None else [1, 2, 3, 4, 5]


class EvalSpec(_Spec):
    """Extra evaluation of the trained network (omit: none, at no cost)."""

    ood: list[OODSetSpec] = Field(
        default_factory=list,
        max_length=32,
        description="out-of-distribution test sets, scored after training with the run's own "
        "preprocessing (results: TrainResult.ood, per set and severity, and ood_acc, their mean)",
    )
    ood_each_epoch: StrictBool = Field(
        False,
        description="also score eval.ood at every evaluation (adds ood_acc to each epoch's "
        "metrics); off: only once, after training",
    )


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
    eval: EvalSpec = Field(
        default_factory=EvalSpec,
        description="extra evaluation: out-of-distribution test sets (eval.ood)",
    )

    @field_validator("rpg")
    @classmethod
    def _recurrence_rpg(cls, v: RPGSpec | None, info: ValidationInfo) -> Any:
        model = info.data.get("model")
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
