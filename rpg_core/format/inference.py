"""What inference needs, stored in a ``.rpg`` file's ``inference`` metadata (docs/FORMAT.md):
the input size and channels, the training normalisation, the class names and how a smaller image
is fitted. Torch-free: the file reader validates it, :mod:`rpg_core.evaluate.predict` uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..catalog.datasets import DATASETS
from ..exceptions import RPGConfigError
from ..image_limits import MAX_IMAGE_SIZE

INFERENCE_ATTR = "rpg_inference"  # the inference dict a model carries (set by load_compact)

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "digits": tuple(str(i) for i in range(10)),
    "cifar10": (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ),
}  # fmt: skip
FASHION_SOURCE_SIZE = DATASETS["fashion-mnist"].source_size or 28


def inference_info(data: Any) -> dict[str, Any]:
    """What inference needs, from a :class:`rpg_core.data.Datasets` (or an experiment spec or
    data spec, whose datasets are then loaded to get the training normalisation)."""
    from ..data import Datasets, load_datasets

    if not isinstance(data, Datasets):
        from ..spec import DataSpec, ExperimentSpec, parse_spec

        if isinstance(data, dict) and "dataset" in data:
            data = DataSpec.model_validate(data)
        elif not isinstance(data, DataSpec):
            spec = data if isinstance(data, ExperimentSpec) else parse_spec(data)
            data = spec.data
        data = load_datasets(data)
    names = tuple(data.classes) or CLASS_NAMES.get(data.name, ())
    pad = data.name == "fashion-mnist" and data.image_size > FASHION_SOURCE_SIZE
    return check_inference(
        {
            "dataset": data.name,
            "image_size": int(data.image_size),
            "in_channels": int(data.in_channels),
            "mean": [float(v) for v in data.mean],
            "std": [float(v) for v in data.std],
            "classes": list(names) if len(names) == data.num_classes else None,
            "fit": "pad" if pad else "resize",
        }
    )


def check_inference(info: Any) -> dict[str, Any]:
    """Validate an inference dict (raises RPGConfigError naming the key)."""
    if not isinstance(info, Mapping):
        raise RPGConfigError(f"inference must be a JSON object, got {type(info).__name__}")
    allowed = {"dataset", "image_size", "in_channels", "mean", "std", "classes", "fit"}
    extra = sorted(set(info) - allowed)
    if extra:
        raise RPGConfigError(f"inference: unknown keys {extra}; allowed: {sorted(allowed)}")
    size, channels = info.get("image_size"), info.get("in_channels")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise RPGConfigError(
            f"inference.image_size must be an int in 1..{MAX_IMAGE_SIZE} (the largest "
            f"data.image_size a model is trained at), got {str(size)[:20]}"
        )
    if channels not in (1, 3):
        raise RPGConfigError(f"inference.in_channels must be 1 or 3, got {channels!r}")
    for key in ("mean", "std"):
        v = info.get(key)
        if (
            not isinstance(v, list)
            or len(v) != channels
            or not all(isinstance(x, int | float) and math.isfinite(x) for x in v)
        ):
            raise RPGConfigError(f"inference.{key} must be {channels} finite numbers, got {v!r}")
    if any(s <= 0 for s in info["std"]):
        raise RPGConfigError("inference.std must be positive")
    classes = info.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not all(isinstance(c, str) and len(c) <= 200 for c in classes)
        or len(classes) > 100_000
    ):
        raise RPGConfigError("inference.classes must be a list of strings (or null)")
    if info.get("fit", "resize") not in ("resize", "pad"):
        raise RPGConfigError(f"inference.fit must be 'resize' or 'pad', got {info.get('fit')!r}")
    dataset = info.get("dataset")
    if dataset is not None and (not isinstance(dataset, str) or len(dataset) > 200):
        raise RPGConfigError("inference.dataset must be a short string")
    return {
        "dataset": dataset,
        "image_size": size,
        "in_channels": channels,
        "mean": [float(x) for x in info["mean"]],
        "std": [float(x) for x in info["std"]],
        "classes": list(classes) if classes is not None else None,
        "fit": info.get("fit", "resize"),
    }
