"""rpg_core: Recurrent Parameter Generator networks in PyTorch.

Every generated kernel is K_i = R_i . W, a seeded permutation and sign flip of one shared ring W.
This package imports only torch, torchvision, numpy and small libraries: never the service stack.
"""

from __future__ import annotations

import logging

from .compact import export_plain, inspect_compact, load_compact, read_header, save_compact
from .data import Datasets, load_datasets
from .engine import Callback, TrainResult, load_trained_model, train
from .exceptions import (
    RPGConfigError,
    RPGDataError,
    RPGError,
    RPGFormatError,
    RPGKeyError,
    RPGTrainingError,
)
from .models import create_model, list_models, register_model
from .params import ParamCount, count_params
from .predict import Prediction, inference_info, predict
from .ring import LayerSlot, Ring, RingSpec
from .rpgify import is_generated, materialize, rings, rpgify, select_layers
from .spec import ExperimentSpec, load_spec, parse_spec

__version__ = "0.1.0"

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
    "load_compact",
    "load_datasets",
    "load_spec",
    "load_trained_model",
    "materialize",
    "parse_spec",
    "predict",
    "read_header",
    "register_model",
    "rings",
    "rpgify",
    "save_compact",
    "select_layers",
    "train",
]
