"""One reader per dataset key: scikit-learn's digits, Fashion-MNIST (IDX), seeded synthetic
images, CIFAR-10/100 (python format, through a restricted unpickler) and image folders."""

from __future__ import annotations

import gzip
import logging
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..catalog.datasets import DATASETS
from ..exceptions import RPGDataError
from ..spec import DataSpec
from .images import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_SYNTHETIC_BYTES,
    SPLIT_SEED,
    Datasets,
    FolderImages,
    TensorImages,
    _in_memory,
)
from .paths import resolve_under

log = logging.getLogger(__name__)


# --- digits -------------------------------------------------------------------------------------
def _resize_u8(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _pad_u8(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad to ``size`` when it is larger (the MNIST convention), else resize."""
    h = x.shape[-1]
    if size > h and (size - h) % 2 == 0:
        p = (size - h) // 2
        return F.pad(x, (p, p, p, p))
    return _resize_u8(x, size)


def load_digits_data(spec: DataSpec) -> Datasets:
    """scikit-learn's digits: 1,797 8x8 images, resized to 32x32, a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_val = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=SPLIT_SEED, stratify=d.target
    )
    size = spec.image_size or 32
    x = _resize_u8(x, size)
    train = TensorImages(x[idx_train], y[idx_train]).subset(spec.train_subset)
    val = TensorImages(x[idx_val], y[idx_val]).subset(spec.val_subset)
    # no flips: a mirrored digit is another digit or none (flips cost 10-40 points in short runs)
    return _in_memory("digits", train, val, 10, spec, "crop")


# --- Fashion-MNIST (IDX) ------------------------------------------------------------------------
def read_idx(path: Path, *, expect_ndim: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes, checking its header."""
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise RPGDataError(f"cannot read IDX file {path}: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise RPGDataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    if ndim != expect_ndim:
        raise RPGDataError(f"{path}: expected an IDX file with {expect_ndim} dims, got {ndim}")
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + math.prod(dims):
        raise RPGDataError(f"{path}: size does not match its header dims {dims} (truncated?)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _fashion_dir(root: Path) -> Path:
    info = DATASETS["fashion-mnist"]
    local = resolve_under(root, info.folder or info.name)
    for d in (local, *map(Path, info.system_dirs)):
        if any((d / f).is_file() for f in info.marker_files):
            return d
    raise RPGDataError(
        f"Fashion-MNIST not found in {local} or {', '.join(info.system_dirs)}; "
        + info.install_hint.replace("<data root>/fashion-mnist/", str(local))
    )


def _idx_pair(d: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    def pick(name: str) -> Path:
        gz = d / f"{name}.gz"
        return gz if gz.is_file() else d / name

    x = read_idx(pick(f"{prefix}-images-idx3-ubyte"), expect_ndim=3)
    y = read_idx(pick(f"{prefix}-labels-idx1-ubyte"), expect_ndim=1)
    if len(x) != len(y):
        raise RPGDataError(f"{d}: {prefix} has {len(x)} images but {len(y)} labels")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def load_fashion(spec: DataSpec, root: Path) -> Datasets:
    """Fashion-MNIST: 60,000 train + 10,000 test (used as val), 28x28 zero-padded to 32x32."""
    d = _fashion_dir(root)
    size = spec.image_size or 32
    xt, yt = _idx_pair(d, "train")
    xv, yv = _idx_pair(d, "t10k")
    train = TensorImages(xt, yt).subset(spec.train_subset)
    val = TensorImages(xv, yv).subset(spec.val_subset)
    train = TensorImages(_pad_u8(train.x, size), train.y)
    val = TensorImages(_pad_u8(val.x, size), val.y)
    return _in_memory("fashion-mnist", train, val, 10, spec, "cifar")


# --- synthetic ----------------------------------------------------------------------------------
def load_synthetic(spec: DataSpec) -> Datasets:
    """Seeded class-conditional images: a smooth random mean image per class plus noise."""
    k = spec.num_classes or 10
    n_train, n_val = spec.num_train or 1000, spec.num_val or 200
    size = spec.image_size or 32
    if (n_train + n_val) * 3 * size * size > MAX_SYNTHETIC_BYTES:
        raise RPGDataError(
            f"synthetic data of {n_train + n_val} images of 3x{size}x{size} is over "
            f"{MAX_SYNTHETIC_BYTES // 1024**3} GiB; lower data.num_train, num_val or image_size"
        )
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    coarse = torch.rand(k, 3, 4, 4, generator=gen)
    means = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n: int) -> TensorImages:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=gen)]
        x = means[y] + 0.25 * torch.randn(n, 3, size, size, generator=gen)
        return TensorImages((x.clamp(0, 1) * 255).round().to(torch.uint8), y)

    return _in_memory("synthetic", draw(n_train), draw(n_val), k, spec, "cifar")


# --- CIFAR (restricted unpickler) ---------------------------------------------------------------
def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 protocol-2 pickles use for bytes (``_codecs.encode(s, 'latin1')``)."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


class SafeCifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Any] = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_encode,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return allowed[(module, name)]


def read_cifar_batch(path: Path) -> dict[str, Any]:
    """One CIFAR python-format batch file as a dict with str keys, read without running code."""
    try:
        with path.open("rb") as f:
            obj = SafeCifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise RPGDataError(f"{path} not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise RPGDataError(f"{path} is not a valid CIFAR python batch file: {err}") from None
    if not isinstance(obj, dict):
        raise RPGDataError(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str, num_classes: int) -> TensorImages:
    batch = read_cifar_batch(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise RPGDataError(f"{path}: 'data' must be a uint8 array [N, 3072]")
    if data.shape[1] != 3 * 32 * 32:
        raise RPGDataError(f"{path}: 'data' rows have {data.shape[1]} values, expected 3072")
    y = np.asarray(labels, dtype=np.int64) if isinstance(labels, list | np.ndarray) else None
    if y is None or y.shape != (len(data),):
        raise RPGDataError(f"{path}: {label_key!r} must be a list of {len(data)} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise RPGDataError(f"{path}: labels must lie in [0, {num_classes})")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorImages(x, torch.from_numpy(y))


def _cat(sets: list[TensorImages]) -> TensorImages:
    return TensorImages(torch.cat([s.x for s in sets]), torch.cat([s.y for s in sets]))


def _download_cifar(name: str, root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    urls = {
        "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "c58f30108f718f92721af3b95e74349a"),
        "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                     "eb9058c3a382ffc7106e4002c42a8d85"),
    }  # fmt: skip
    url, md5 = urls[name]
    try:
        download_and_extract_archive(url, str(root), md5=md5)
    except Exception as err:  # noqa: BLE001 - any network or archive failure
        raise RPGDataError(f"downloading {name} failed: {err}") from None


def load_cifar(spec: DataSpec, root: Path, *, download: bool = False) -> Datasets:
    """CIFAR-10/100 from the official python-format folder under the data root."""
    ten = spec.dataset == "cifar10"
    info = DATASETS[spec.dataset]
    folder, k = info.folder or info.name, info.classes or 0
    label, title = ("labels", "CIFAR-10") if ten else ("fine_labels", "CIFAR-100")
    d = resolve_under(root, folder)
    if not d.is_dir() and download:
        _download_cifar(spec.dataset, Path(root).resolve())
        d = resolve_under(root, folder)
    if not d.is_dir():
        raise RPGDataError(f"{d} not found; put the {title} python version there")
    names = [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]
    train = _cat([_cifar_arrays(resolve_under(d, n), label, k) for n in names])
    val = _cifar_arrays(resolve_under(d, "test_batch" if ten else "test"), label, k)
    train, val = train.subset(spec.train_subset), val.subset(spec.val_subset)
    size = spec.image_size or 32
    train, val = (TensorImages(_resize_u8(s.x, size), s.y) for s in (train, val))
    return _in_memory(spec.dataset, train, val, k, spec, "cifar")


# --- image folders ------------------------------------------------------------------------------
def _scan_split(root: Path, split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        cdir = resolve_under(root, str(split_dir.relative_to(root)), cls)
        if not cdir.is_dir():
            continue
        for f in sorted(cdir.iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(resolve_under(root, str(f.relative_to(root))))
                labels.append(label)
    return files, labels


def load_image_folder(spec: DataSpec, root: Path) -> Datasets:
    """``<root>/<name>/train/<class>/*`` and ``val/``; classes are train's folder names, sorted."""
    name = spec.dataset.split(":", 1)[1]
    base = Path(root).resolve()
    tree = resolve_under(base, name)
    train_dir, val_dir = resolve_under(tree, "train"), resolve_under(tree, "val")
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise RPGDataError(
            f"{tree} must hold train/<class>/*.jpg|png and val/<class>/*.jpg|png folders"
        )
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise RPGDataError(f"{train_dir} needs at least two class folders, found {classes}")
    size = spec.image_size or 224
    load_size = max(size, round(size / 0.875))
    tf, tl = _scan_split(base, train_dir, classes)
    vf, vl = _scan_split(base, val_dir, classes)
    if not tf or not vf:
        raise RPGDataError(f"{tree}: no images ({', '.join(IMAGE_EXTENSIONS)}) in train/ or val/")
    train = FolderImages(tf, tl, load_size).subset(spec.train_subset)
    val = FolderImages(vf, vl, load_size).subset(spec.val_subset)
    return Datasets(
        name=spec.dataset,
        train=train,
        val=val,
        num_classes=len(classes),
        in_channels=3,
        image_size=size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        augment="imagenet" if spec.augment is not False else "none",
        classes=tuple(classes),
    )
