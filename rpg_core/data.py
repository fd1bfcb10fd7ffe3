"""Datasets named by key, loaded from under one data root, and seeded batch loaders.

Keys (``DataSpec.dataset``): ``digits`` (scikit-learn's bundled 8x8 digits), ``fashion-mnist``
(IDX files), ``synthetic`` (seeded class-conditional images), ``cifar10`` / ``cifar100`` (the
official python-format folders, read with a restricted unpickler), ``imagefolder:<name>``
(``<root>/<name>/{train,val}/<class>/*.png|jpg``).

No value in a spec reaches outside the data root: absolute paths, ``..`` and symlinks that
resolve outside it raise :class:`RPGDataError`.

Augmentation runs on whole uint8 batches with a ``torch.Generator`` seeded from
``(seed, epoch)``: an epoch's batches depend on nothing else, so a run resumed at an epoch
boundary sees exactly the batches an uninterrupted run sees, bit for bit.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .exceptions import RPGConfigError, RPGDataError
from .spec import DATASET_RE, DataSpec

log = logging.getLogger(__name__)

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLIT_SEED = 0  # the fixed seed of train/val splits and subsets (independent of train.seed)
MAX_SYNTHETIC_BYTES = 2 * 1024**3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AugmentKind = Literal["cifar", "crop", "imagenet", "none"]  # crop: cifar without the flip


# --- the data root ------------------------------------------------------------------------------
def default_data_root() -> Path:
    """``$RPG_DATA_ROOT``, or ``./data``."""
    return Path(os.environ.get("RPG_DATA_ROOT") or "data")


def resolve_under(root: str | Path, *parts: str) -> Path:
    """``root/parts...``, refusing anything that would leave ``root`` (``..``, absolute paths,
    symlinks resolving outside it)."""
    base = Path(root).resolve()
    for part in parts:
        p = Path(part)
        if p.is_absolute() or ".." in p.parts or part.strip() == "":
            raise RPGDataError(
                f"data path {part!r} is not allowed: use a plain name inside the data root {base}"
            )
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):
        raise RPGDataError(
            f"{base.joinpath(*parts)} resolves to {target}, outside the data root {base}; "
            f"copy the data into the data root instead of linking it"
        )
    return target


# --- image sets ---------------------------------------------------------------------------------
class TensorImages(Dataset[tuple[torch.Tensor, int]]):
    """Images in memory: ``x`` uint8 [N, C, H, W] and ``y`` int64 [N]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise RPGDataError("internal: TensorImages needs uint8 [N,C,H,W] and labels [N]")
        self.x, self.y = x, y.to(torch.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])

    def subset(self, n: int | None, seed: int = SPLIT_SEED) -> TensorImages:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.sort().values
        return TensorImages(self.x[idx], self.y[idx])


class FolderImages(Dataset[tuple[torch.Tensor, int]]):
    """Image files decoded on demand: shorter side resized to ``size``, centre-cropped square."""

    def __init__(self, files: list[Path], labels: list[int], size: int) -> None:
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        try:
            with Image.open(self.files[i]) as raw:
                rgb = raw.convert("RGB")
            w, h = rgb.size
            scale = self.size / min(w, h)
            nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
            rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - self.size) // 2, (nh - self.size) // 2
            rgb = rgb.crop((left, top, left + self.size, top + self.size))
            arr = np.asarray(rgb, dtype=np.uint8).copy()
        except OSError as err:
            raise RPGDataError(f"cannot read image {self.files[i]}: {err}") from None
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), self.labels[i]

    def subset(self, n: int | None, seed: int = SPLIT_SEED) -> FolderImages:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        keep = sorted(idx.tolist())
        return FolderImages(
            [self.files[i] for i in keep], [self.labels[i] for i in keep], self.size
        )


ImageSet = TensorImages | FolderImages


@dataclass(frozen=True)
class Datasets:
    """A dataset's train and val images and what a model needs to know about them."""

    name: str
    train: ImageSet
    val: ImageSet
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: AugmentKind  # the augmentation style of the training set ("none": off)
    classes: tuple[str, ...] = ()


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
    local = resolve_under(root, "fashion-mnist")
    for d in (local, SYSTEM_FASHION):
        if (d / "train-images-idx3-ubyte.gz").is_file() or (
            d / "train-images-idx3-ubyte"
        ).is_file():
            return d
    raise RPGDataError(
        f"Fashion-MNIST not found in {local} or {SYSTEM_FASHION}; install the Debian package "
        f"dataset-fashion-mnist or put the four IDX files in {local}"
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
    folder, label = (
        ("cifar-10-batches-py", "labels") if ten else ("cifar-100-python", "fine_labels")
    )
    k, title = (10, "CIFAR-10") if ten else (100, "CIFAR-100")
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


# --- entry point --------------------------------------------------------------------------------
def _in_memory(
    name: str, train: TensorImages, val: TensorImages, k: int, spec: DataSpec, style: AugmentKind
) -> Datasets:
    xf = train.x.float().div_(255.0)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in xf.std(dim=(0, 2, 3)))
    return Datasets(
        name=name,
        train=train,
        val=val,
        num_classes=k,
        in_channels=train.x.shape[1],
        image_size=train.x.shape[-1],
        mean=mean,
        std=std,
        augment=style if spec.augment is not False else "none",
    )


def load_datasets(
    spec: DataSpec | dict[str, Any], *, data_root: str | Path | None = None, download: bool = False
) -> Datasets:
    """The train and val images a data spec names. ``download``: fetch CIFAR when missing."""
    if isinstance(spec, dict):
        try:
            spec = DataSpec.model_validate(spec)
        except ValueError as err:
            raise RPGConfigError(f"invalid data spec: {err}") from None
    if not DATASET_RE.match(spec.dataset):
        raise RPGConfigError(f"data.dataset: unknown dataset {spec.dataset!r}")
    root = Path(data_root) if data_root is not None else default_data_root()
    log.info("loading dataset %s (data root %s)", spec.dataset, root)
    if spec.dataset == "digits":
        return load_digits_data(spec)
    if spec.dataset == "synthetic":
        return load_synthetic(spec)
    if spec.dataset == "fashion-mnist":
        return load_fashion(spec, root)
    if spec.dataset in ("cifar10", "cifar100"):
        return load_cifar(spec, root, download=download)
    return load_image_folder(spec, root)


# --- augmentation (whole uint8 batches, seeded) ---------------------------------------------------
def crop_flip(
    x: torch.Tensor, gen: torch.Generator, pad: int = 4, *, flip: bool = True
) -> torch.Tensor:
    """CIFAR-style: zero-pad by ``pad``, take a random crop of the original size, flip half
    (``flip=False``: no flips; the same random draws, so only the flips differ).

    The loaders pad by ``image_size / 8`` (4 at 32x32, as the paper's CIFAR recipe)."""
    b, c, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    flip_mask = (torch.rand(b, generator=gen) < 0.5).to(dev) & flip
    xp = F.pad(x, (pad, pad, pad, pad))
    ar = torch.arange(w, device=dev)
    cols = ox[:, None] + torch.where(flip_mask[:, None], w - 1 - ar, ar)  # [b, w]
    rows = oy[:, None] + torch.arange(h, device=dev)  # [b, h]
    # one gather over the flattened padded image, channels first (no permute, no copy)
    idx = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(b, 1, h * w)
    return torch.gather(xp.view(b, c, -1), 2, idx.expand(b, c, h * w)).view(b, c, h, w)


def _affine(sx: torch.Tensor, sy: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    theta = torch.zeros(len(sx), 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    return theta


def resized_crop_flip(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """ImageNet-style: a random crop of 8%-100% of the area, aspect 3/4-4/3, resized, flipped."""
    b = len(x)
    area = torch.empty(b).uniform_(0.08, 1.0, generator=gen)
    logr = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    w = (area * logr.exp()).sqrt().clamp(max=1.0)
    h = (area / logr.exp()).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = _affine(w * flip, h, cx, cy).to(x.device)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffling and augmentation: a function of (seed, epoch)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + 1) % 2**63)


class BatchLoader:
    """Seeded batches of normalised float images: ``for x, y in loader.epoch(e)``.

    In-memory sets are indexed directly (and live on the device); image folders go through a
    ``DataLoader`` with ``num_workers`` (and ``pin_memory`` on CUDA). Shuffling and
    augmentation come from :func:`epoch_generator`, so worker count never changes a batch.
    """

    def __init__(
        self,
        data: Datasets,
        split: Literal["train", "val"],
        batch_size: int,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
    ) -> None:
        self.data, self.split, self.batch_size, self.seed = data, split, batch_size, seed
        self.device = torch.device(device)
        self.num_workers = num_workers
        self.images: ImageSet = data.train if split == "train" else data.val
        self.train = split == "train"
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(data.mean, device=self.device).view(shape)
        self.std = torch.tensor(data.std, device=self.device).view(shape)
        self._mem: tuple[torch.Tensor, torch.Tensor] | None = None
        if isinstance(self.images, TensorImages):
            self._mem = (self.images.x.to(self.device), self.images.y.to(self.device))

    @property
    def num_samples(self) -> int:
        return len(self.images)

    def _order(self, gen: torch.Generator) -> list[torch.Tensor]:
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        chunks = list(order.split(self.batch_size))
        if self.train and len(chunks) > 1 and len(chunks[-1]) < 2:
            chunks.pop()  # a batch of one breaks BatchNorm
        return chunks

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        batches = -(-n // b)
        if self.train and batches > 1 and n % b == 1:
            batches -= 1  # _order drops a last batch of one
        return batches

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = epoch_generator(self.seed, epoch)
        chunks = self._order(gen)
        for x, y in self._raw_batches(chunks):
            yield self._transform(x, gen), y

    def _raw_batches(
        self, chunks: list[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._mem is not None:
            xs, ys = self._mem
            for idx in chunks:
                i = idx.to(self.device)
                yield xs[i], ys[i]
            return
        loader = DataLoader(
            self.images,
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield (
                x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True),
            )

    def _transform(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        size = self.data.image_size
        style = self.data.augment if self.train else "none"
        if style in ("cifar", "crop"):
            x = crop_flip(x, gen, pad=max(1, round(size / 8)), flip=style == "cifar")
        elif style == "imagenet":
            x = resized_crop_flip(x, gen, size)
        xf = center_crop(x, size).float()
        return ((xf / 255.0) - self.mean) / self.std
