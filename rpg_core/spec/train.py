"""The ``train`` section of a spec and its recipes: ``resolve_train`` turns a :class:`TrainSpec`
into concrete hyper-parameters (the recipe's, overridden by every field that is set)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

# Limits that keep a spec sane; the service may lower them through its settings.
MAX_EPOCHS = 10_000
MAX_DEVICES = 64  # train.devices: ranks of one data-parallel run (one host; see docs/DEPLOY.md)
MAX_BATCH_SIZE = 65_536

Recipe = Literal["short", "paper-cifar", "paper-imagenet", "cifar", "imagenet"]
Schedule = Literal["cosine", "onecycle", "step", "constant"]


class TrainSpec(BaseModel):
    """Optimisation. Unset fields take the recipe's values (see ``RECIPES``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe: Recipe = Field(
        "short",
        description="short: per-step warm-up + cosine, for runs of a few to a few dozen epochs "
        "(the default); paper-cifar / paper-imagenet: the paper's step schedules, for full-length "
        "runs (cifar and imagenet are their old names)",
    )
    epochs: StrictInt | None = Field(None, ge=1, le=MAX_EPOCHS, description="default: recipe's")
    batch_size: StrictInt | None = Field(
        None, ge=1, le=MAX_BATCH_SIZE, description="default: the recipe's (short: by data size)"
    )
    optimizer: Literal["sgd", "adamw"] | None = Field(
        None,
        description="sgd: SGD with momentum (the paper's); adamw: AdamW (momentum is its beta1). "
        "Default: the recipe's; choosing one without lr takes that optimizer's default lr",
    )
    lr: StrictFloat | None = Field(None, gt=0, le=100, description="peak learning rate")
    momentum: StrictFloat | None = Field(None, ge=0, lt=1)
    weight_decay: StrictFloat | None = Field(None, ge=0, le=1)
    schedule: Schedule | None = Field(
        None,
        description="cosine: linear warm-up then cosine to 0, per step; onecycle: cosine warm-up "
        "from lr/25 then cosine to 0; step: x gamma at each milestone epoch (the paper's); "
        "constant: warm-up then flat. Default: the recipe's (step when milestones are given)",
    )
    warmup_epochs: StrictFloat | None = Field(
        None, ge=0, le=MAX_EPOCHS, description="epochs of linear warm-up (fractions allowed)"
    )
    milestones: list[StrictInt] | None = Field(
        None, description="schedule step: epochs after which lr *= gamma"
    )
    gamma: StrictFloat | None = Field(None, gt=0, le=1, description="schedule step: the lr factor")
    seed: StrictInt = Field(0, ge=0, lt=2**31, description="seed of init, shuffling, augmentation")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]{1,3})?)$")
    deterministic: StrictBool = Field(True, description="deterministic algorithms (CPU: bit-exact)")
    devices: StrictInt = Field(
        1,
        ge=1,
        le=MAX_DEVICES,
        description="devices of one data-parallel run (torch.distributed DDP, one rank each: "
        "NCCL on GPUs, gloo on the CPU); each rank takes its share of the same global batch "
        "(train.batch_size), so the run trains as a 1-device run does",
    )
    lr_by_ring_uses: StrictBool | None = Field(
        None,
        description="when lr is not given, multiply the recipe's lr by min(1, sqrt(512 / uses)) "
        "for the most-used ring (uses = generated weights / ring elements): a ring's relative "
        "steps grow as the root of its uses. Default: the recipe's (short: true; paper: false)",
    )
    label_smoothing: StrictFloat = Field(
        0.0, ge=0, lt=1, description="cross-entropy label smoothing"
    )
    precise_bn: Literal["auto", "on", "off"] = Field(
        "auto",
        description="recompute batchnorm statistics on training batches before each evaluation; "
        "auto: while the run has had fewer than PRECISE_BN_STEPS steps (short runs, where the "
        "running averages still remember the initial weights)",
    )

    @model_validator(mode="after")
    def _devices_fit(self) -> TrainSpec:
        batch = self.batch_size
        if self.devices > 1 and batch is not None and batch < 2 * self.devices:
            raise ValueError(
                f"train.devices ({self.devices}) needs train.batch_size of at least "
                f"{2 * self.devices} (two images per rank of each global batch); raise "
                f"train.batch_size or lower train.devices"
            )
        return self

    @model_validator(mode="after")
    def _milestones_sorted(self) -> TrainSpec:
        if self.milestones is not None and (
            any(m < 1 for m in self.milestones) or self.milestones != sorted(set(self.milestones))
        ):
            raise ValueError("milestones must be increasing positive epoch numbers")
        if self.milestones and self.schedule not in (None, "step"):
            raise ValueError(
                f"milestones apply to schedule step only, but schedule is {self.schedule!r}: "
                f"remove train.milestones or set train.schedule: step"
            )
        hp = resolve_train(self)
        epochs = hp["epochs"]
        late = [m for m in self.milestones or [] if m >= epochs]
        if late:
            fix = (
                "remove train.milestones (a 1-epoch run has no room for one)"
                if epochs == 1
                else f"use milestones below {epochs} or more epochs"
            )
            raise ValueError(
                f"milestones {late} are not below epochs ({epochs}): a milestone at or after the "
                f"last epoch never applies; {fix}"
            )
        if hp["warmup_epochs"] >= epochs and hp["warmup_epochs"] > 0:
            raise ValueError(
                f"warmup_epochs ({hp['warmup_epochs']}) must be below epochs ({epochs}): "
                f"the run would end before its warm-up; lower train.warmup_epochs"
            )
        return self


# Steps below which precise_bn "auto" recomputes the batchnorm statistics before evaluating.
PRECISE_BN_STEPS = 1000

_PAPER_CIFAR: dict[str, Any] = {
    # the paper, CIFAR: batch 128, SGD momentum 0.9, wd 5e-4, lr 0.1, x0.1 at 60/120/160 of 200
    "optimizer": "sgd",
    "epochs": 200,
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "step",
    "warmup_epochs": 0.0,
    "milestones": [60, 120, 160],
    "gamma": 0.1,
    "lr_by_ring_uses": False,
}
_PAPER_IMAGENET: dict[str, Any] = {
    # the paper, ImageNet: batch 256, wd 3e-5, lr 0.3, x0.1 every 75 epochs
    "optimizer": "sgd",
    "epochs": 300,
    "batch_size": 256,
    "lr": 0.3,
    "momentum": 0.9,
    "weight_decay": 3e-5,
    "schedule": "step",
    "warmup_epochs": 0.0,
    "milestones": [75, 150, 225],
    "gamma": 0.1,
    "lr_by_ring_uses": False,
}
RECIPES: dict[str, dict[str, Any]] = {
    # Short runs (the default): SGD with a per-step schedule, measured on digits and
    # Fashion-MNIST (docs/BENCHMARKS.md, "Short-run recipe"). Small batches give short runs
    # enough steps; the warm-up keeps the first steps of a deep network from blowing up.
    "short": {
        "optimizer": "sgd",
        "epochs": 15,
        "batch_size": None,  # auto: see auto_batch_size
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "warmup_epochs": 0.3,
        "milestones": [],
        "gamma": 0.1,
        "lr_by_ring_uses": True,
    },
    "paper-cifar": _PAPER_CIFAR,
    "paper-imagenet": _PAPER_IMAGENET,
    "cifar": _PAPER_CIFAR,  # old name of paper-cifar
    "imagenet": _PAPER_IMAGENET,  # old name of paper-imagenet
}


AUTO_BATCH_STEPS = 100  # the short recipe's batch size gives an epoch at least this many steps
# 16, not 32: digits (1,437 images) at batch 32 has 44 steps an epoch, and a width-1 ResNet18
# with a 2K ring ended 3 epochs at 86.9-91.7% (3 seeds); at batch 16 (90 steps) 91.9-92.5%
# (docs/BENCHMARKS.md, "Training that works by default").
AUTO_BATCH_RANGE = (16, 128)
# The short recipe's lr was measured at batch 32 and up; below it, an auto batch size scales the
# lr down linearly (plain width-1 ResNet18 on digits at batch 16: lr 0.1 gave 67.5% on one of two
# seeds, lr 0.05 98.1-98.3%).
AUTO_BATCH_LR_BATCH = 32


def auto_batch_lr_factor(batch_size: int) -> float:
    """The lr factor of an auto batch size: ``min(1, batch_size / AUTO_BATCH_LR_BATCH)``."""
    return min(1.0, batch_size / AUTO_BATCH_LR_BATCH)


def auto_batch_size(num_train: int) -> int:
    """The short recipe's batch size for ``num_train`` images: the largest power of two in
    16..128 that still gives ``AUTO_BATCH_STEPS`` steps an epoch (digits: 16; 10K images: 64;
    Fashion-MNIST's 60K and CIFAR's 50K: 128).
    Few steps, not few epochs, is what leaves a short run at chance."""
    lo, hi = AUTO_BATCH_RANGE
    size = lo
    while size * 2 <= hi and num_train // (size * 2) >= AUTO_BATCH_STEPS:
        size *= 2
    return size


# An optimizer other than the recipe's, without lr / weight_decay, takes these.
OPTIMIZER_LR = {"sgd": 0.05, "adamw": 2e-3}
OPTIMIZER_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


def resolve_train(train: TrainSpec) -> dict[str, Any]:
    """Concrete hyper-parameters: the recipe's, overridden by every field that is set.

    Milestones given without a schedule mean the step schedule. A step-schedule run shorter than
    its recipe scales the recipe's milestones to its length; a warm-up longer than a short run's
    first tenth is cut to it.
    """
    recipe = RECIPES[train.recipe]
    out = {k: v for k, v in train.model_dump().items() if v is not None}
    if train.optimizer is not None and train.optimizer != recipe["optimizer"]:
        out.setdefault("lr", OPTIMIZER_LR[train.optimizer])
        out.setdefault("weight_decay", OPTIMIZER_WEIGHT_DECAY[train.optimizer])
    if train.milestones and train.schedule is None:
        out["schedule"] = "step"
    for key, value in recipe.items():
        out.setdefault(key, value)
    if out["schedule"] != "step":
        out["milestones"] = []
    elif train.milestones is None and out["epochs"] != recipe["epochs"]:
        f = out["epochs"] / recipe["epochs"]
        out["milestones"] = sorted({max(1, round(m * f)) for m in recipe["milestones"]})
        out["milestones"] = [m for m in out["milestones"] if m < out["epochs"]]
    if train.warmup_epochs is None:
        out["warmup_epochs"] = min(out["warmup_epochs"], out["epochs"] / 10)
    return out
