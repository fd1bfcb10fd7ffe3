"""What a family's builder takes beyond the common arguments, read from a spec: each family
module names its own entry point ``spec_options`` (timm's factory forwards to the family's
entry point rather than branching per family). :func:`create_model` calls it with the model
section (its ``num_classes``/``in_channels`` filled), the spec's ``rpg`` section and ``plain``,
and gets back the model section as it will be saved, the extra builder arguments, and the
``rpg`` section the model's rings are built from (None: a plain model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import RPGConfigError
from ..spec import ModelSpec, RPGSpec, recurrence_rpg, sharing_rpg

SpecOptions = Callable[
    [ModelSpec, "RPGSpec | None", bool], "tuple[ModelSpec, dict[str, Any], RPGSpec | None]"
]

__all__ = ["SpecOptions", "plain_options", "recurrent_options", "stacked_options"]


def _no_recurrence(model_spec: ModelSpec) -> None:
    if model_spec.recurrence is not None:
        raise RPGConfigError(
            f"model.recurrence: arch {model_spec.arch!r} does not apply a block repeatedly"
        )


def plain_options(
    model_spec: ModelSpec, rpg: RPGSpec | None, plain: bool
) -> tuple[ModelSpec, dict[str, Any], RPGSpec | None]:
    """A family with no options of its own (resnet, a plugin): the spec's ``rpg`` as it is
    (``plain`` concerns only rings that a recurrence or a sharing mode makes)."""
    _no_recurrence(model_spec)
    return model_spec, {}, rpg


def recurrent_options(
    model_spec: ModelSpec, rpg: RPGSpec | None, plain: bool
) -> tuple[ModelSpec, dict[str, Any], RPGSpec | None]:
    """A family that applies a block repeatedly (mdeq; a plugin whose builder takes
    ``recurrence``): ``model.recurrence`` is passed on, and its ``rpg`` mode makes the rings
    (not with ``plain``: the repeats with ordinary convs)."""
    rec = model_spec.recurrence
    if rec is None:
        return model_spec, {}, rpg
    kwargs: dict[str, Any] = {"recurrence": rec.model_dump()}
    if rec.mode == "rpg" and not plain:
        try:
            return model_spec, kwargs, recurrence_rpg(rec, rpg)
        except ValueError as err:
            raise RPGConfigError(str(err)) from None
    if rpg is not None:
        raise RPGConfigError(f"rpg: recurrence mode {rec.mode} takes no rpg section")
    return model_spec, kwargs, None


def stacked_options(
    model_spec: ModelSpec, rpg: RPGSpec | None, plain: bool
) -> tuple[ModelSpec, dict[str, Any], RPGSpec | None]:
    """Stacked sub-networks (hourglass, encdec): ``stacks`` and ``sharing`` made explicit;
    ``sharing: rpg`` makes the rings, one global ring or one per block (not with ``plain``:
    the sub-networks with ordinary convs)."""
    _no_recurrence(model_spec)
    sharing = model_spec.resolved_sharing()
    if sharing is None:
        return model_spec, {}, rpg
    stacks = model_spec.resolved_stacks()
    model_spec = model_spec.model_copy(update={"stacks": stacks, "sharing": sharing})
    kwargs: dict[str, Any] = {"stacks": stacks, "sharing": sharing}
    if sharing == "rpg" and not plain:
        try:
            return model_spec, kwargs, sharing_rpg(model_spec, rpg)
        except ValueError as err:
            raise RPGConfigError(str(err)) from None
    if rpg is not None and sharing != "rpg":
        raise RPGConfigError(f"rpg: sharing {sharing} takes no rpg section")
    return model_spec, kwargs, None if plain else rpg
