"""rpg_core: Recurrent Parameter Generator networks in PyTorch.

Every generated kernel is K_i = R_i . W, a seeded permutation and sign flip of one shared ring W.
"""

from __future__ import annotations

import logging

from .exceptions import (
    RPGConfigError,
    RPGDataError,
    RPGError,
    RPGFormatError,
    RPGKeyError,
    RPGTrainingError,
)
from .params import ParamCount, count_params
from .ring import LayerSlot, Ring, RingSpec
from .rpgify import is_generated, materialize, rings, rpgify, select_layers

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "LayerSlot",
    "ParamCount",
    "RPGConfigError",
    "RPGDataError",
    "RPGError",
    "RPGFormatError",
    "RPGKeyError",
    "RPGTrainingError",
    "Ring",
    "RingSpec",
    "__version__",
    "count_params",
    "is_generated",
    "materialize",
    "rings",
    "rpgify",
    "select_layers",
]
