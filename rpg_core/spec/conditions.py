"""The experimental conditions of a run: what a fit, a table cell or a comparison may pool over.

Two runs are comparable when everything in their *resolved* spec that changes the outcome is the
same, except the knob being compared. The conditions are derived by taking the whole resolved
spec (the recipe's hyper-parameters filled in, augmentation and the sharing variant resolved)
and leaving out only:

- the compared knobs: the size (:data:`SIZE_KNOBS`: ``rpg.ring_size``, ``model.width``,
  ``prune.fraction``, ``method.budget``); a table compares :data:`VARIANT_KNOBS` (``model.sharing``,
  ``model.stacks``) instead, see :func:`table_key`;
- the replicates: seeds (:data:`REPLICATE_FIELDS`) are draws, not conditions;
- labels and the way a run is executed, which do not change what it measures
  (:data:`NOT_CONDITIONS`: ``name``, ``tags``, the device, DataLoader workers, deterministic
  kernels, the extra OOD evaluation).

So a field added to the spec is a condition by default. :func:`conditions_of` returns the
canonical conditions (a flat ``{dotted.path: value}`` dict), :func:`conditions_key` its short
stable key (a hash of its canonical JSON) and :func:`describe` a sentence a person reads.
Torch-free: the API stores the key with each run at submission so that grouping is a query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from ..catalog.tasks import DEFAULT_TASK
from . import ExperimentSpec, parse_spec, resolve_augment
from .method import HASHED_GENERATOR
from .train import RECIPES, resolve_train

__all__ = [
    "METHOD_KNOBS",
    "NOT_CONDITIONS",
    "REPLICATE_FIELDS",
    "SIZE_KNOBS",
    "VARIANT_KNOBS",
    "Conditions",
    "comparable",
    "conditions_key",
    "conditions_of",
    "describe",
    "differences",
    "field_label",
    "key_of",
    "method_of",
    "table_key",
]

Conditions = dict[str, Any]  # {dotted spec path: value}, the compared knobs and seeds left out

# what a power law compares: the size, however it is asked for (a method's budget too; the
# method itself is a condition, so each method is its own series)
SIZE_KNOBS = ("rpg.ring_size", "model.width", "prune.fraction", "method.budget")
VARIANT_KNOBS = ("model.sharing", "model.stacks")  # what a table (Tables 4, 5) compares
REPLICATE_FIELDS = ("train.seed", "rpg.seed")  # replicates, not conditions
NOT_CONDITIONS = (
    "name",
    "tags",
    "train.device",
    "train.devices",  # a data-parallel run trains as a 1-device run does (same global batch)
    "train.deterministic",
    "data.num_workers",
    "eval",  # out-of-distribution sets scored after training: they change no training metric
)
_LEFT_OUT = REPLICATE_FIELDS + NOT_CONDITIONS
KEY_CHARS = 16  # hex characters of the key (64 bits)


def _canonical_recipe(name: str) -> str:
    """A recipe's current name (``cifar`` is the old name of ``paper-cifar``: the same dict)."""
    return next(k for k, v in RECIPES.items() if v is RECIPES[name])


def _resolved(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec with what it leaves to defaults filled in: the recipe's hyper-parameters,
    augmentation, the sharing variant and its number of sub-networks."""
    out: dict[str, Any] = {}
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        out[name] = value
    train = resolve_train(spec.train)
    train["recipe"] = _canonical_recipe(spec.train.recipe)
    out["train"] = train
    data = spec.data.model_dump()
    data["augment"] = resolve_augment(spec)
    out["data"] = data
    model = spec.model.model_dump()
    if spec.model.resolved_sharing() is not None:
        model["sharing"] = spec.model.resolved_sharing()
        model["stacks"] = spec.model.resolved_stacks()
    out["model"] = model
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        value = {k: getattr(value, k) for k in type(value).model_fields}
        if not value:
            out[prefix] = {}
            return
    elif not (isinstance(value, dict) and prefix in ("", "train", "data", "model")):
        out[prefix] = _plain(value)  # a leaf: a value, a list, or a mapping that is data
        return
    for k, v in value.items():
        _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _plain(value.model_dump())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _left_out(path: str, extra: Iterable[str] = ()) -> bool:
    return _left_out_of(path, tuple(extra))


@lru_cache(maxsize=8192)  # few distinct paths: every spec has the same ~100 (a submission's CPU)
def _left_out_of(path: str, extra: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in (*_LEFT_OUT, *extra))


def conditions_of(spec: ExperimentSpec | Mapping[str, Any]) -> Conditions:
    """The conditions of a run: its resolved spec, flat (``{"train.epochs": 3, ...}``), less
    its seeds, its labels and how it is executed (the size knobs stay: :func:`comparable`
    leaves out what a comparison compares). ``spec`` is an ExperimentSpec or its dump (as
    stored); raises RPGConfigError for an invalid one."""
    parsed = parse_spec(dict(spec)) if isinstance(spec, Mapping) else spec
    flat: dict[str, Any] = {}
    _flatten(_resolved(parsed), "", flat)
    return {k: flat[k] for k in sorted(flat) if not _left_out(k)}


def comparable(conditions: Mapping[str, Any], compared: Iterable[str] = SIZE_KNOBS) -> Conditions:
    """The conditions less the ``compared`` knobs (default: the size): what every run of a
    comparison over those knobs shares."""
    return {k: v for k, v in conditions.items() if not _left_out(k, compared)}


def key_of(conditions: Mapping[str, Any], compared: Iterable[str] = SIZE_KNOBS) -> str:
    """The short stable key of ``conditions`` less the ``compared`` knobs (default: the size;
    everything under a path too): the hash of their canonical JSON."""
    text = json.dumps(
        comparable(conditions, compared), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


def conditions_key(spec: ExperimentSpec | Mapping[str, Any]) -> str:
    """The key of a run's conditions for a power law: equal keys, comparable runs (they differ
    at most in a size knob and their seeds)."""
    return key_of(conditions_of(spec))


def table_key(conditions: Mapping[str, Any]) -> str:
    """The key a table (sharing variants against stacks) pools by: the conditions less the
    variant knobs and the rings of the variant (``rpg``: only ``sharing: rpg`` has them); the
    size knobs (width) stay conditions there."""
    return key_of(conditions, (*VARIANT_KNOBS, "rpg"))


# the paths a method decides (its own section; the rings it builds or leaves out): what a
# comparison across methods leaves out beside the size (api.analysis's budget table)
METHOD_KNOBS = ("method", "rpg")


def method_of(spec_or_conditions: Mapping[str, Any]) -> str:
    """The method a run shrinks its network by (issue 24), the one rule for every reader: the
    spec's ``method.name`` when it has a ``method`` section; else ``hashed`` for rings of the
    HashedNets generator (``rpg.generator: 3``), ``rpg`` for any other ``rpg`` section, and
    ``width`` for a plain network (no ``rpg``: a plain network made narrower by
    ``model.width``). Reads a spec as stored (nested) or its flat conditions alike."""
    c = spec_or_conditions
    name = c.get("method.name")
    section = c.get("method")
    if name is None and isinstance(section, Mapping):
        name = section.get("name")
    if isinstance(name, str) and name:
        return name
    rpg = c.get("rpg")
    generator = rpg.get("generator") if isinstance(rpg, Mapping) else c.get("rpg.generator")
    if isinstance(rpg, Mapping) or any(k.startswith("rpg.") for k in c):
        return "hashed" if generator == HASHED_GENERATOR else "rpg"
    return "width"


# ----------------------------------------------------------------------------- in words

_LABELS = {
    "task": "task",
    "model.arch": "architecture",
    "model.variant": "stem",
    "model.recurrence": "recurrence",
    "model.sharing": "sharing",
    "model.stacks": "sub-networks",
    "model.num_classes": "classes",
    "model.in_channels": "input channels",
    "rpg": "RPG",
    "rpg.scope": "ring scope",
    "rpg.permute": "permutation",
    "rpg.reflect": "reflection",
    "rpg.include": "generated layers",
    "rpg.exclude": "ordinary layers",
    "rpg.linear": "generated linear layers",
    "rpg.generator": "index generator",
    "data.dataset": "dataset",
    "data.train_subset": "training images",
    "data.val_subset": "validation images",
    "data.image_size": "image size",
    "data.augment": "augmentation",
    "train.recipe": "recipe",
    "train.epochs": "epochs",
    "train.batch_size": "batch size",
    "train.optimizer": "optimizer",
    "train.lr": "learning rate",
    "train.weight_decay": "weight decay",
    "train.schedule": "schedule",
    "train.warmup_epochs": "warm-up",
    "train.label_smoothing": "label smoothing",
    "prune": "pruning",
    "prune.source": "pruned run",
    "method": "method",
    "method.name": "method",
    "method.rounds": "pruning rounds",
    "method.finetune_epochs": "fine-tuning epochs",
}


def field_label(path: str) -> str:
    """A condition's name in words (``train.epochs`` -> ``epochs``); the path when unnamed."""
    return _LABELS.get(path, path)


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The condition paths whose values differ between ``a`` and ``b`` (a path that only one
    has differs too), sorted. A whole section present in one (``rpg``: a plain network against
    an RPG one) is named once, and so is another method (not the options only it has)."""
    out = set()
    for k in set(a) | set(b):
        if a.get(k, _MISSING) != b.get(k, _MISSING):
            top = k.split(".")[0]
            section_absent = (a.get(top, _MISSING) is None) or (b.get(top, _MISSING) is None)
            out.add(top if section_absent and top in ("rpg", "prune") else k)
    if "method.name" in out:  # another method: its own options follow from it (rounds, ...)
        out = {k for k in out if not k.startswith("method.") or k == "method.name"}
    return sorted(out)


_MISSING = object()


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def _rings(c: Mapping[str, Any]) -> str:
    """The rings in words ("" for a stacked model whose sharing variant says it all, or
    conditions that leave the rings out)."""
    if "rpg" not in c and "rpg.scope" not in c:
        return ""
    if "rpg" in c and c["rpg"] is None:
        return "" if c.get("model.sharing") is not None else "plain"
    scope = c.get("rpg.scope")
    scope_text = f"{scope} ring" if isinstance(scope, str) else "custom rings"
    on = (("permuted", c.get("rpg.permute")), ("reflected", c.get("rpg.reflect")))
    kinds = [word for word, yes in on if yes]
    return scope_text + (
        f", {' and '.join(kinds)}" if kinds else ", neither permuted nor reflected"
    )


def describe(c: Mapping[str, Any]) -> str:
    """The conditions in a sentence: ``fashion-mnist, 3,000 training images at 14 px, no
    augmentation; resnet18 (cifar stem), global ring, permuted and reflected; 3 epochs, short
    recipe (sgd, lr 0.1, cosine, batch by data size)``."""
    if not c:
        return "conditions unknown"
    data = str(c.get("data.dataset", "?"))
    if c.get("data.train_subset") is not None:
        data += f", {_count(c['data.train_subset'])} training images"
    if c.get("data.image_size") is not None:
        data += f" at {c['data.image_size']} px"
    if c.get("data.val_subset") is not None:
        data += f", {_count(c['data.val_subset'])} validation images"
    data += ", augmented" if c.get("data.augment") else ", no augmentation"
    model = str(c.get("model.arch", "?"))
    if c.get("task") in (None, DEFAULT_TASK):
        model += f" ({c.get('model.variant', '?')} stem)"
    if c.get("model.width") not in (None, 1.0):
        model += f", width {c['model.width']:g}"
    if c.get("model.stacks") is not None:
        model += f", {c['model.stacks']} sub-networks, sharing {c.get('model.sharing')}"
    if c.get("model.recurrence") is not None:
        rec = c["model.recurrence"]
        model += f", recurrence {rec.get('mode')} ×{rec.get('repeats')}"
    if "prune.source" in c:
        model = f"pruned from run {c['prune.source']}"
    else:
        rings = _rings(c)
        model += f", {rings}" if rings else ""
    batch = c.get("train.batch_size")
    epochs = c.get("train.epochs")
    train = (
        f"{epochs} epoch{'' if epochs == 1 else 's'}, {c.get('train.recipe')} recipe "
        f"({c.get('train.optimizer')}, lr {c.get('train.lr'):g}, {c.get('train.schedule')}, "
        f"batch {batch if batch is not None else 'by data size'})"
        if isinstance(c.get("train.lr"), int | float)
        else f"{epochs} epochs, {c.get('train.recipe')} recipe"
    )
    task = "" if c.get("task") in (None, DEFAULT_TASK) else f"{c['task']}: "
    return f"{task}{data}; {model}; {train}"
