"""Datasets named by key, loaded from under one data root, and seeded batch loaders.

Keys (``DataSpec.dataset``): ``digits`` (scikit-learn's bundled 8x8 digits), ``fashion-mnist``
(IDX files), ``synthetic`` (seeded class-conditional images), ``cifar10`` / ``cifar100`` (the
official python-format folders, read with a restricted unpickler), ``imagefolder:<name>``
(``<root>/<name>/{train,val}/<class>/*.png|jpg``); pose: ``synthetic-pose`` (procedural
figures) and ``mpii:<name>`` (the stacked-hourglass reference's MPII JSON and images);
multitask: ``synthetic-scenes`` (ray-cast rooms with exact depth and normals) and
``scenes:<name>`` (``{train,val}/{rgb,depth,normal}/<id>.png``). Pose and multitask sets are
:class:`TensorSamples` (images and a dict of targets); docs/SYNTHETIC.md describes them.

No value in a spec reaches outside the data root: absolute paths, ``..`` and symlinks that
resolve outside it raise :class:`RPGDataError`.

Augmentation runs on whole uint8 batches with a ``torch.Generator`` seeded from
``(seed, epoch)``: an epoch's batches depend on nothing else, so a run resumed at an epoch
boundary sees exactly the batches an uninterrupted run sees, bit for bit.

The package, in the order a batch is made (timm's ``data/`` layout): :mod:`.paths` (the data
root and path safety), :mod:`.readers` (one per dataset key), :mod:`.images` (the image sets and
:class:`Datasets`), :mod:`.dense`, :mod:`.pose` and :mod:`.scenes` (pose and multitask sets),
:mod:`.transforms` (seeded batch augmentation) and :mod:`.loader`
(:func:`load_datasets` and :class:`BatchLoader`).
"""

from __future__ import annotations

from .dense import TensorSamples, dense_datasets, subset_indices
from .images import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_SYNTHETIC_BYTES,
    SPLIT_SEED,
    SYSTEM_FASHION,
    AugmentKind,
    Datasets,
    FolderImages,
    ImageSet,
    SampleSet,
    TensorImages,
)
from .loader import BatchLoader, Targets, load_datasets
from .paths import default_data_root, resolve_under
from .pose import JOINT_NAMES, NUM_JOINTS, load_mpii, load_synthetic_pose
from .readers import (
    SafeCifarUnpickler,
    load_cifar,
    load_digits_data,
    load_fashion,
    load_image_folder,
    load_synthetic,
    read_cifar_batch,
    read_idx,
)
from .scenes import (
    DEPTH_SCALE,
    MAP_NAMES,
    SceneParams,
    load_scene_folder,
    load_synthetic_scenes,
    render_scenes,
)
from .transforms import center_crop, crop_flip, epoch_generator, resized_crop_flip

__all__ = [
    "DEPTH_SCALE",
    "JOINT_NAMES",
    "MAP_NAMES",
    "NUM_JOINTS",
    "SampleSet",
    "SceneParams",
    "Targets",
    "TensorSamples",
    "dense_datasets",
    "load_mpii",
    "load_scene_folder",
    "load_synthetic_pose",
    "load_synthetic_scenes",
    "render_scenes",
    "subset_indices",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "MAX_SYNTHETIC_BYTES",
    "SPLIT_SEED",
    "SYSTEM_FASHION",
    "AugmentKind",
    "BatchLoader",
    "Datasets",
    "FolderImages",
    "ImageSet",
    "SafeCifarUnpickler",
    "TensorImages",
    "center_crop",
    "crop_flip",
    "default_data_root",
    "epoch_generator",
    "load_cifar",
    "load_datasets",
    "load_digits_data",
    "load_fashion",
    "load_image_folder",
    "load_synthetic",
    "read_cifar_batch",
    "read_idx",
    "resized_crop_flip",
    "resolve_under",
]
