"""The spec's ``model`` and ``rpg`` sections: which network, how its block recurs, and how its
layers are generated from rings. Re-exported by :mod:`rpg_core.spec`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..catalog.archs import ARCHS, list_models, supports_recurrence
from ..catalog.tasks import TASKS, task_of_arch

# Limits that keep a spec sane; the service may lower them through its settings.
MAX_RING_SIZE = 2**31 - 1
MAX_REPEATS = 8  # model.recurrence.repeats
MAX_STACKS = 8  # model.stacks
DEFAULT_STACKS = 2  # model.stacks unset (1 for sharing single)
RING_NAME_RE = r"^[A-Za-z0-9_\-]{1,64}$"  # pydantic's patterns: $ is the end of the text


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    stacks: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_STACKS,
        description=f"stacked architectures (hourglass, encdec): the number of sub-networks; "
        f"default {DEFAULT_STACKS} (1 for sharing single)",
    )
    sharing: str | None = Field(
        None,
        description="stacked architectures: how the sub-networks share weights. hourglass "
        "(pose, paper Table 4): none (each its own weights), full (CPM: the same weights), rpg "
        "(one global ring the size of one sub-network generates all). encdec (multitask, "
        "Table 5): single (one sub-network), reuse (weights and batchnorms reused), "
        "reuse-new-bn (weights reused, own batchnorms), rpg (block-level rings: a ring per "
        "block shared by the sub-networks, own permutations, signs and batchnorms). Default rpg",
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

    @model_validator(mode="after")
    def _stacked(self) -> ModelSpec:
        task = TASKS[task_of_arch(self.arch)]
        if not task.sharing:
            if self.sharing is not None or self.stacks is not None:
                raise ValueError(
                    f"stacks/sharing: arch {self.arch!r} has no stacked sub-networks; remove "
                    f"model.stacks and model.sharing, or use arch hourglass (pose) or encdec "
                    f"(multitask)"
                )
            return self
        if self.sharing is not None and self.sharing not in task.sharing:
            raise ValueError(
                f"sharing: arch {self.arch!r} ({task.name}) takes sharing "
                f"{' | '.join(task.sharing)}, got {self.sharing!r}"
            )
        if self.sharing == "single" and self.stacks not in (None, 1):
            raise ValueError(
                f"stacks: sharing single is one sub-network; set stacks to 1 (or omit it), or "
                f"use sharing reuse, reuse-new-bn or rpg for {self.stacks}"
            )
        return self

    def resolved_sharing(self) -> str | None:
        """``sharing`` with its default filled (None for an architecture without stacks)."""
        return sharing_and_stacks(self.model_dump())[0]

    def resolved_stacks(self) -> int | None:
        """``stacks`` with its default filled (None for an architecture without stacks)."""
        return sharing_and_stacks(self.model_dump())[1]


def default_stacks(sharing: str | None) -> int:
    """``model.stacks`` when unset: 1 for ``single``, else :data:`DEFAULT_STACKS`."""
    return 1 if sharing == "single" else DEFAULT_STACKS


def sharing_and_stacks(model: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """``(sharing, stacks)`` of a ``model`` section (a dict, as stored), defaults filled;
    ``(None, None)`` for an architecture without stacked sub-networks."""
    task = TASKS[task_of_arch(str(model.get("arch") or ""))]
    if not task.sharing:
        return None, None
    sharing = model.get("sharing") or task.default_sharing
    stacks = model.get("stacks")
    return sharing, stacks if isinstance(stacks, int) else default_stacks(sharing)


def count_or_fraction(v: Any, what: str) -> Any:
    """A size given as a count (int in 1..MAX_RING_SIZE; 45000.0 from a JSON client is one) or
    a fraction in (0, 1]; ValueError saying it ``must be <what>`` otherwise."""
    msg = f"must be {what}"
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{msg}, got {v!r}")
    if isinstance(v, float) and v.is_integer() and v > 1:
        v = int(v)
    if isinstance(v, int) and not 0 < v <= MAX_RING_SIZE:
        raise ValueError(f"{msg}; a count must be in 1..{MAX_RING_SIZE}, got {v}")
    if isinstance(v, float) and not 0 < v <= 1:
        raise ValueError(f"{msg}; a fraction must be in (0, 1], got {v}")
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
    generator: Literal[1, 2, 3, 4] = Field(
        4,
        description="index generator: 4, two-level block permutation (fastest: new rings); "
        "2, keyed bijection (the default before 2026-12-03); 1, the sort-based generator "
        "of rings made before 2026-11-27 (kept so their files and checkpoints rebuild exactly); "
        "3, HashedNets (method hashed): each weight reads a ring element chosen by a hash of "
        "its position, with replacement (uneven use)",
    )

    @field_validator("ring_size", mode="before")
    @classmethod
    def _ring_size(cls, v: Any) -> Any:
        return count_or_fraction(
            v, "a count (int > 0) or a fraction in (0, 1] of the generated weights"
        )

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


# the blocks of an encdec sub-network (rpg_core.models.stacked): sharing rpg makes one ring per block,
# which the same block of every sub-network is generated from (paper Section 5.4)
ENCDEC_BLOCKS = ARCHS["encdec"].ring_blocks
SHARING_RPG_INCLUDE = ["stacks.*"]  # the layers a sharing rpg ring generates


def sharing_rpg(model: ModelSpec, rpg: RPGSpec | None) -> RPGSpec:
    """The rings of ``model.sharing: rpg``: hourglass, one global ring over the sub-networks
    (``stacks.*``) the size of one of them (``ring_size = 1 / stacks`` of the generated
    weights); encdec, one ring per block (:data:`ENCDEC_BLOCKS`), each the size of one
    sub-network's block. ``rpg`` may set ring_size, seed, permute, reflect and generator;
    raises ValueError naming the field that makes no sense with sharing."""
    stacks = model.resolved_stacks() or 1
    blocks = ARCHS[model.arch].ring_blocks if model.arch in ARCHS else ()
    if blocks:
        scope: Any = {f"stacks.*.{b}.*": b for b in blocks}
    else:
        scope = "global"
    if rpg is None:
        return RPGSpec(ring_size=1.0 / stacks, scope=scope, include=list(SHARING_RPG_INCLUDE))
    if (
        rpg.scope not in ("global", scope)
        or rpg.include not in (None, SHARING_RPG_INCLUDE)
        or rpg.exclude is not None
        or rpg.linear
    ):  # (a saved file's spec holds the scope and include this function made: accepted)
        raise ValueError(
            "scope/include/exclude/linear: sharing rpg chooses the rings itself (hourglass: one "
            "global ring over the sub-networks; encdec: a ring per block); set only ring_size, "
            "seed, permute, reflect or generator in rpg, or omit rpg"
        )
    return rpg.model_copy(update={"scope": scope, "include": list(SHARING_RPG_INCLUDE)})
