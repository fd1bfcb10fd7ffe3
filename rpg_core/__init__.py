"""rpg_core: Recurrent Parameter Generator networks in PyTorch.

Every generated kernel is K_i = R_i . W, a seeded permutation and sign flip of one shared ring W.
This package imports only torch, torchvision, numpy and small libraries: never the service stack.
The names below are imported on first use (PEP 562), so ``import rpg_core.spec`` (the API's
need) loads no torch; ``from rpg_core import train`` loads the engine.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .catalog.tasks import list_tasks, task_info
    from .data import Datasets, load_datasets
    from .evaluate.predict import Prediction, inference_info, predict
    from .evaluate.predict_tasks import predict_keypoints, predict_maps
    from .exceptions import (
        RPGConfigError,
        RPGDataError,
        RPGError,
        RPGFormatError,
        RPGKeyError,
        RPGTrainingError,
    )
    from .format import export_plain, inspect_compact, load_compact, read_header, save_compact
    from .models import create_model, list_models, register_model
    from .rpg.params import ParamCount, count_params
    from .rpg.ring import LayerSlot, Ring, RingSpec
    from .rpg.rpgify import is_generated, materialize, rings, rpgify, select_layers
    from .spec import ExperimentSpec, load_spec, parse_spec
    from .training.engine import Callback, load_trained_model, train
    from .training.result import TrainResult

_LAZY: dict[str, str] = {  # public name -> the submodule that defines it
    "Callback": "training.engine",
    "Datasets": "data",
    "ExperimentSpec": "spec",
    "LayerSlot": "rpg.ring",
    "ParamCount": "rpg.params",
    "Prediction": "evaluate.predict",
    "RPGConfigError": "exceptions",
    "RPGDataError": "exceptions",
    "RPGError": "exceptions",
    "RPGFormatError": "exceptions",
    "RPGKeyError": "exceptions",
    "RPGTrainingError": "exceptions",
    "Ring": "rpg.ring",
    "RingSpec": "rpg.ring",
    "TrainResult": "training.result",
    "count_params": "rpg.params",
    "create_model": "models",
    "export_plain": "format",
    "inference_info": "evaluate.predict",
    "inspect_compact": "format",
    "is_generated": "rpg.rpgify",
    "list_models": "models",
    "list_tasks": "catalog.tasks",
    "task_info": "catalog.tasks",
    "load_compact": "format",
    "load_datasets": "data",
    "load_spec": "spec",
    "load_trained_model": "training.engine",
    "materialize": "rpg.rpgify",
    "parse_spec": "spec",
    "predict": "evaluate.predict",
    "predict_keypoints": "evaluate.predict_tasks",
    "predict_maps": "evaluate.predict_tasks",
    "read_header": "format",
    "register_model": "models",
    "rings": "rpg.rpgify",
    "rpgify": "rpg.rpgify",
    "save_compact": "format",
    "select_layers": "rpg.rpgify",
    "train": "training.engine",
}


logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Callback",
    "Datasets",
    "ExperimentSpec",
    "LayerSlot",
    "ParamCount",
    "Prediction",
    "RPGConfigError",
    "RPGDataError",
    "RPGError",
    "RPGFormatError",
    "RPGKeyError",
    "RPGTrainingError",
    "Ring",
    "RingSpec",
    "TrainResult",
    "__version__",
    "count_params",
    "create_model",
    "export_plain",
    "inference_info",
    "inspect_compact",
    "is_generated",
    "list_models",
    "list_tasks",
    "load_compact",
    "load_datasets",
    "load_spec",
    "load_trained_model",
    "materialize",
    "parse_spec",
    "predict",
    "predict_keypoints",
    "predict_maps",
    "read_header",
    "register_model",
    "rings",
    "rpgify",
    "save_compact",
    "select_layers",
    "task_info",
    "train",
]


# A public function may share a submodule's name: importing the submodule must not replace the
# function on the package (the import system sets the submodule as an attribute of its parent).
_SHADOWED: set[str] = set()


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the function of that name is resolved (lazily) by __getattr__ below
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
