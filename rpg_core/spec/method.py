"""The spec's ``method`` section (issue 24): which way of shrinking the network, to what budget.

``method: {name: rpg | width | hashed | prune-global | prune-filters, budget: B}``. ``B`` is a number of
backbone parameters (int > 0), or a fraction in (0, 1] of the backbone of the plain network the
``model`` section names (the dense network every method shrinks). The methods are
:mod:`rpg_core.catalog.methods`; how each reads the budget is ``docs/METHODS.md``.

What is checked here (torch-free): the name, the budget's form and the method's minimum, and
that the rest of the spec fits the method (:func:`method_rpg`). That the budget does not exceed
the dense network needs parameter counts: :func:`rpg_core.models.budget.resolve_method` checks
it where the model is built. A spec without ``method`` behaves exactly as before.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from ..catalog.methods import METHODS
from .model import RPGSpec, count_or_fraction

__all__ = [
    "HASHED_GENERATOR",
    "MAX_PRUNE_ROUNDS",
    "PRUNING_METHODS",
    "MethodSpec",
    "check_method",
    "method_rpg",
]

HASHED_GENERATOR = 3  # rpg_core.rpg.generator: version 3, splitmix64-hash (HashedNets)
MAX_PRUNE_ROUNDS = 20
MAX_FINETUNE_EPOCHS = 100
# the pruning methods only: their defaults (the other methods keep None, so a stored spec
# re-parses)
_PRUNE_DEFAULTS = {"rounds": 3, "finetune_epochs": 1}
PRUNING_METHODS = ("prune-global", "prune-filters")  # train the dense network, then prune


class MethodSpec(BaseModel):
    """How the network is shrunk to ``budget`` backbone parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        ..., description=f"the method: {' | '.join(METHODS)} (rpg methods lists them)"
    )
    budget: int | float = Field(
        ...,
        description="backbone parameters (int > 0), or a fraction in (0, 1] of the backbone of "
        "the plain network the model section names",
        examples=[20000, 0.1],
    )
    rounds: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_PRUNE_ROUNDS,
        description="prune-global, prune-filters: pruning rounds after the dense training "
        "(train.epochs); each prunes to a geometric step towards the budget, then fine-tunes "
        "(default 3)",
    )
    finetune_epochs: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_FINETUNE_EPOCHS,
        description="prune-global, prune-filters: fine-tuning epochs after each round (SGD with "
        "cosine decay from the run's learning rate; the masks stay on; default 1)",
    )

    @model_validator(mode="before")
    @classmethod
    def _prune_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") in PRUNING_METHODS:
            return {**data, **{k: v for k, v in _PRUNE_DEFAULTS.items() if data.get(k) is None}}
        return data

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown method {v!r}; use one of {', '.join(METHODS)}")
        return v

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> Any:
        return count_or_fraction(
            v, "a count of backbone parameters (int > 0) or a fraction in (0, 1]"
        )

    @model_validator(mode="after")
    def _fits(self) -> MethodSpec:
        info = METHODS[self.name]
        if isinstance(self.budget, int) and self.budget < info.min_budget:
            raise ValueError(
                f"budget: {self.name} needs at least {info.min_budget} backbone parameters, "
                f"got {self.budget}"
            )
        if self.name not in PRUNING_METHODS:
            extra = [f for f in _PRUNE_DEFAULTS if getattr(self, f) is not None]
            if extra:
                raise ValueError(
                    f"{extra[0]}: only methods prune-global and prune-filters prune in rounds; "
                    f"remove method.{extra[0]} or use name prune-global or prune-filters"
                )
        return self


def method_rpg(method: MethodSpec, rpg: Any) -> Any:
    """The ``rpg`` section (as given: a dict, an RPGSpec or None) a method implies, before
    validation: ``rpg`` and ``hashed`` get ``rpg.ring_size = budget`` (and ``hashed``
    ``rpg.generator = 3``) when unset; ``width`` and the pruning methods build plain networks and
    leave ``rpg`` as it is (the check then refuses one)."""
    if method.name not in ("rpg", "hashed"):
        return rpg
    if isinstance(rpg, RPGSpec):
        return rpg
    if rpg is None:
        rpg = {}
    if not isinstance(rpg, dict):
        return rpg  # the section's own validation names it
    out = dict(rpg)
    out.setdefault("ring_size", method.budget)
    if method.name == "hashed":
        out.setdefault("generator", HASHED_GENERATOR)
    return out


def check_method(method: MethodSpec, rpg: RPGSpec | None) -> None:
    """Raise ValueError naming the field when ``rpg`` does not fit ``method``."""
    if method.name in ("width", *PRUNING_METHODS):
        if rpg is not None:
            raise ValueError(
                f"rpg: method {method.name} shrinks the plain network; omit rpg (or use "
                f"method.name rpg or hashed)"
            )
        return
    assert rpg is not None  # method_rpg filled it
    if rpg.ring_size != method.budget:
        raise ValueError(
            f"rpg.ring_size: method.budget sets the ring size; omit rpg.ring_size or set it to "
            f"{method.budget!r}, got {rpg.ring_size!r}"
        )
    if method.name == "hashed" and rpg.generator != HASHED_GENERATOR:
        raise ValueError(
            f"rpg.generator: method hashed uses generator {HASHED_GENERATOR} (splitmix64-hash); "
            f"omit rpg.generator, got {rpg.generator}"
        )
    if method.name == "hashed" and not rpg.permute:
        raise ValueError(
            "rpg.permute: method hashed reads each weight's ring element from a hash of its "
            "position; permute false would read element j mod N (rpg's unshuffled order); "
            "omit rpg.permute"
        )
    if method.name == "rpg" and rpg.generator == HASHED_GENERATOR:
        raise ValueError(
            f"rpg.generator: generator {HASHED_GENERATOR} is HashedNets' sampling with "
            "replacement; use method.name hashed, or generator 4 (the default) or 2 for rpg"
        )
