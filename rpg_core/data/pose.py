"""Human pose data: ``synthetic-pose`` (procedural articulated figures) and ``mpii:<name>``
(the MPII JSON of the stacked-hourglass reference code).

Both give :class:`~.dense.TensorSamples` of RGB uint8 images with the targets

- ``joints``  float32 [N, 16, 2]: (x, y) in input pixels, pixel centres at integer coordinates,
  in MPII order (:data:`JOINT_NAMES`);
- ``visible`` float32 [N, 16]: 1 where the joint is annotated, inside the image and not
  occluded (PCKh counts only these);
- ``head``    float32 [N]: the head segment length in pixels, upper neck (8) to head top (9):
  PCKh@0.5 counts a joint correct within 0.5 x head.

docs/SYNTHETIC.md describes the generator and the folder layout.
"""

from __future__ import annotations

import colorsys
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import RPGDataError, RPGImageError
from ..image_limits import open_image
from ..spec import DataSpec
from ..stopping import StopCheck, check_stop
from .dense import TensorSamples, check_memory, dense_datasets, subset_indices
from .images import SPLIT_SEED, Datasets
from .paths import resolve_under

log = logging.getLogger(__name__)

__all__ = [
    "JOINT_NAMES",
    "MPII_FILE",
    "NUM_JOINTS",
    "Occluder",
    "load_mpii",
    "load_synthetic_pose",
    "random_occluders",
    "random_pose",
    "render_pose",
    "synthetic_pose",
]

JOINT_NAMES = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
    "l_wrist",
)  # fmt: skip
NUM_JOINTS = 16
MPII_FILE = "mpii_annotations.json"
POSE_TRAIN, POSE_VAL, POSE_SIZE = 2000, 400, 64
_SEED_TAG = 0x9053  # the synthetic-pose stream; train and val add 1 and 2
_SS = 2  # supersampling of the drawing (anti-aliased edges)

# the limbs drawn as thick segments: (from, to, width in torso lengths, side)
_LIMBS = (
    (2, 1, 0.22, "r"), (1, 0, 0.17, "r"), (3, 4, 0.22, "l"), (4, 5, 0.17, "l"),
    (12, 11, 0.14, "r"), (11, 10, 0.11, "r"), (13, 14, 0.14, "l"), (14, 15, 0.11, "l"),
)  # fmt: skip


# --- synthetic-pose -------------------------------------------------------------------------------
def _dir(angle: float) -> np.ndarray:
    """A unit vector at ``angle`` radians from straight down (image y grows downwards)."""
    return np.array([math.sin(angle), math.cos(angle)])


def random_pose(rng: np.random.Generator, size: int) -> np.ndarray:
    """16 joints (float64 [16, 2], input pixels) of a random human-like figure in a
    ``size`` x ``size`` image: a kinematic skeleton in torso lengths with joint angles within
    human limits, foreshortened limbs, a body turn, facing the camera or away (which swaps the
    image sides of left and right), then scaled, rotated in-plane and translated."""
    j = np.zeros((NUM_JOINTS, 2))
    lean = rng.uniform(-0.3, 0.3)
    up = _dir(math.pi + lean)
    across = np.array([-up[1], up[0]])  # the image's +x for an upright figure
    facing = 1.0 if rng.random() < 0.7 else -1.0  # -1: seen from behind
    turn = rng.uniform(0.35, 1.0)  # body rotated out of the image plane narrows it
    j[7] = j[6] + up  # thorax
    neck_angle = math.pi + lean + rng.uniform(-0.3, 0.3)
    j[8] = j[7] + 0.28 * _dir(neck_angle)
    j[9] = j[8] + 0.42 * _dir(neck_angle + rng.uniform(-0.45, 0.45))
    for side, hip, shoulder in ((-1.0, 2, 12), (1.0, 3, 13)):  # right, left (person's)
        s = -side * facing  # facing the camera, the person's right is on the image's left
        j[hip] = j[6] + s * 0.19 * turn * across
        j[shoulder] = j[7] + s * 0.34 * turn * across + 0.06 * -up
    flexed = rng.random() < 0.15  # sitting, kicking, climbing
    for hip, knee, ankle in ((2, 1, 0), (3, 4, 5)):
        a = rng.uniform(-1.6, 1.6) if flexed else rng.uniform(-0.55, 0.55)
        bend = rng.uniform(0.0, 1.4) * (1 if rng.random() < 0.5 else -1)
        j[knee] = j[hip] + 0.95 * rng.uniform(0.6, 1.0) * _dir(a)
        j[ankle] = j[knee] + 0.9 * rng.uniform(0.6, 1.0) * _dir(a + bend)
    for shoulder, elbow, wrist in ((12, 11, 10), (13, 14, 15)):
        a = rng.uniform(-2.7, 2.7)
        j[elbow] = j[shoulder] + 0.6 * rng.uniform(0.5, 1.0) * _dir(a)
        j[wrist] = j[elbow] + 0.55 * rng.uniform(0.5, 1.0) * _dir(a + rng.uniform(-2.4, 2.4))
    theta = rng.normal(0.0, 0.35) if rng.random() < 0.9 else rng.uniform(-math.pi, math.pi)
    c, s_ = math.cos(theta), math.sin(theta)
    j = j @ np.array([[c, s_], [-s_, c]])
    lo, hi = j.min(0), j.max(0)
    extent = max(hi - lo) + 0.3  # plus the head and limb widths
    # person-centred, as MPII crops are (objpos, 1.25 x the person's scale): the figure spans
    # 70-95% of the image, its centre within 6% of the image's
    scale = rng.uniform(0.7, 0.95) * size / extent
    centre = (size - 1) / 2 + rng.uniform(-0.06, 0.06, 2) * size
    return (j - (lo + hi) / 2) * scale + centre


@dataclass(frozen=True)
class Occluder:
    """A rectangle drawn over the figure, in input pixels (inclusive bounds); joints inside it
    are not visible."""

    x0: float
    y0: float
    x1: float
    y1: float
    colour: tuple[int, int, int]
    striped: bool = False

    def covers(self, xy: np.ndarray) -> np.ndarray:
        x, y = xy[..., 0], xy[..., 1]
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)


def random_occluders(rng: np.random.Generator, size: int, joints: np.ndarray) -> list[Occluder]:
    """None (half the images) or one or two rectangles near random joints."""
    out: list[Occluder] = []
    if rng.random() < 0.5:
        return out
    for _ in range(1 + int(rng.random() < 0.3)):
        cx, cy = joints[rng.integers(NUM_JOINTS)] + rng.normal(0, 0.06 * size, 2)
        w, h = rng.uniform(0.12, 0.3, 2) * size
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        out.append(
            Occluder(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, colour, rng.random() < 0.5)  # type: ignore[arg-type]
        )
    return out


def _colour(rng: np.random.Generator, hue: float, sat: tuple[float, float] = (0.45, 1.0)) -> Any:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*sat), rng.uniform(0.35, 1.0))
    return (int(r * 255), int(g * 255), int(b * 255))


_BAND_PIXELS = 1 << 20  # the background is computed in bands of rows this large (stop checks)


def _background(
    rng: np.random.Generator, n: int, should_stop: StopCheck | None = None
) -> np.ndarray:
    """A textured gradient: two colours along a random direction plus coarse colour noise
    (computed in bands of rows, ``should_stop`` checked before each: the same pixels)."""
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, n)
    k = int(rng.integers(3, 9))
    coarse = rng.normal(0, rng.uniform(10, 40), (k, k, 3))
    reps = -(-n // k)
    noise = np.repeat(np.repeat(coarse, reps, 0), reps, 1)[:n, :n]
    out = np.empty((n, n, 3), np.uint8)
    rows = max(1, _BAND_PIXELS // max(n, 1))
    for r0 in range(0, n, rows):
        check_stop(should_stop)
        band = slice(r0, r0 + rows)
        t = (math.cos(a) * ramp[None, :] + math.sin(a) * ramp[band, None]) + 0.5
        img = c1 + (c2 - c1) * t[..., None]
        out[band] = np.clip(img + noise[band], 0, 255).astype(np.uint8)
    return out


def render_pose(
    rng: np.random.Generator,
    size: int,
    joints: np.ndarray,
    occluders: list[Occluder],
    should_stop: StopCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the figure with ``joints`` over a cluttered background, then the occluders: the
    image (uint8 [size, size, 3]) and ``visible`` (float32 [16]: inside the image and under no
    occluder). Right limbs take warm hues, left limbs cool ones (the asymmetric cue real
    people's appearance gives); the clutter uses both."""
    from PIL import Image, ImageDraw

    n = size * _SS
    img = Image.fromarray(_background(rng, n, should_stop))
    draw = ImageDraw.Draw(img)
    off = (_SS - 1) / 2

    def px(p: np.ndarray) -> tuple[float, float]:
        return (float(p[0]) * _SS + off, float(p[1]) * _SS + off)

    for _ in range(int(rng.integers(2, 6))):  # clutter lines (some limb-like)
        a, b = rng.uniform(-0.1, 1.1, 2) * n, rng.uniform(-0.1, 1.1, 2) * n
        width = max(1, int(rng.uniform(0.01, 0.07) * n))
        draw.line([tuple(a), tuple(b)], fill=_colour(rng, rng.random(), (0, 1)), width=width)
    for _ in range(int(rng.integers(1, 4))):  # blobs
        c, r = rng.uniform(0, n, 2), rng.uniform(0.03, 0.15, 2) * n
        box = [c[0] - r[0], c[1] - r[1], c[0] + r[0], c[1] + r[1]]
        draw.ellipse(box, fill=_colour(rng, rng.random(), (0, 1)))

    torso = float(np.linalg.norm(joints[7] - joints[6])) * _SS
    warm, cool = rng.uniform(-0.08, 0.12), rng.uniform(0.45, 0.68)
    shades = {
        "r": [_colour(rng, warm + rng.uniform(-0.03, 0.03)) for _ in range(2)],
        "l": [_colour(rng, cool + rng.uniform(-0.03, 0.03)) for _ in range(2)],
    }
    cloth = _colour(rng, rng.random(), (0.0, 0.6))
    skin = _colour(rng, rng.uniform(0.02, 0.1), (0.25, 0.6))
    back = "r" if rng.random() < 0.5 else "l"

    def limbs(side: str) -> None:
        for k, (a, b, w, s) in enumerate(_LIMBS):
            if s != side:
                continue
            width = max(2, int(w * torso))
            fill = shades[s][k % 2]
            pa, pb = px(joints[a]), px(joints[b])
            draw.line([pa, pb], fill=fill, width=width)
            for p in (pa, pb):  # round joints
                r = width / 2
                draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=fill)

    limbs(back)
    draw.polygon([px(joints[i]) for i in (12, 13, 3, 2)], fill=cloth)
    draw.line([px(joints[7]), px(joints[8])], fill=skin, width=max(2, int(0.12 * torso)))
    limbs("l" if back == "r" else "r")
    # the head: an ellipse along upper neck -> head top
    centre = (joints[8] + joints[9]) / 2
    axis = joints[9] - joints[8]
    length = max(float(np.linalg.norm(axis)), 1e-6)
    u = axis / length
    v = np.array([-u[1], u[0]])
    t = np.linspace(0, 2 * math.pi, 16, endpoint=False)
    pts = centre + np.outer(np.cos(t), u) * length * 0.55 + np.outer(np.sin(t), v) * length * 0.4
    draw.polygon([px(p) for p in pts], fill=skin)

    for occ in occluders:
        box = [occ.x0 * _SS + off, occ.y0 * _SS + off, occ.x1 * _SS + off, occ.y1 * _SS + off]
        draw.rectangle(box, fill=occ.colour)
        if occ.striped:
            dark = tuple(c // 2 for c in occ.colour)
            step = max(2, _SS * 3)
            for y in range(int(box[1]), int(box[3]), step * 2):
                draw.rectangle([box[0], y, box[2], min(y + step - 1, box[3])], fill=dark)

    check_stop(should_stop)
    out = np.asarray(img.reduce(_SS), dtype=np.float32)
    out += rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape).astype(np.float32)
    inside = (joints >= 0).all(1) & (joints <= size - 1).all(1)
    hidden = np.zeros(NUM_JOINTS, dtype=bool)
    for occ in occluders:
        hidden |= occ.covers(joints)
    visible = (inside & ~hidden).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), visible


def _pose_sample(
    stream: int, i: int, size: int, should_stop: StopCheck | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([SPLIT_SEED, _SEED_TAG, stream, i])
    joints = random_pose(rng, size)
    occluders = random_occluders(rng, size, joints)
    img, visible = render_pose(rng, size, joints, occluders, should_stop)
    return img, joints, visible


def synthetic_pose(
    indices: list[int], size: int, *, split: str, should_stop: StopCheck | None = None
) -> TensorSamples:
    """The synthetic-pose samples ``indices`` of ``split`` (train or val: different seeds).
    Sample ``i`` depends only on (split, i, size), so a subset draws only what it keeps.
    ``should_stop`` is checked before each sample (raises ``rpg_core.stopping.Stopped``)."""
    stream = {"train": 1, "val": 2}[split]
    imgs = np.zeros((len(indices), size, size, 3), np.uint8)
    joints = np.zeros((len(indices), NUM_JOINTS, 2), np.float32)
    visible = np.zeros((len(indices), NUM_JOINTS), np.float32)
    for k, i in enumerate(indices):
        check_stop(should_stop)
        imgs[k], joints[k], visible[k] = _pose_sample(stream, i, size, should_stop)
    return _pose_samples(imgs, joints, visible)


def _pose_samples(imgs: np.ndarray, joints: np.ndarray, visible: np.ndarray) -> TensorSamples:
    head = np.linalg.norm(joints[:, 9] - joints[:, 8], axis=1).astype(np.float32)
    return TensorSamples(
        torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(),
        {
            "joints": torch.from_numpy(joints),
            "visible": torch.from_numpy(visible),
            "head": torch.from_numpy(head),
        },
    )


def pose_bytes(size: int) -> int:
    return 3 * size * size + 4 * (NUM_JOINTS * 3 + 1)


def load_synthetic_pose(spec: DataSpec, should_stop: StopCheck | None = None) -> Datasets:
    """``synthetic-pose``: ``num_train`` (2000) / ``num_val`` (400) figures at ``image_size``
    (64); ``train_subset`` / ``val_subset`` keep a seeded subset (drawing only those)."""
    size = spec.image_size or POSE_SIZE
    n_train, n_val = spec.num_train or POSE_TRAIN, spec.num_val or POSE_VAL
    tr = subset_indices(n_train, spec.train_subset)
    va = subset_indices(n_val, spec.val_subset)
    check_memory(
        "synthetic-pose",
        len(tr) + len(va),
        pose_bytes(size),
        "lower data.num_train, num_val or image_size",
    )
    train = synthetic_pose(tr, size, split="train", should_stop=should_stop)
    val = synthetic_pose(va, size, split="val", should_stop=should_stop)
    return dense_datasets(
        "synthetic-pose", train, val, task="pose", num_classes=NUM_JOINTS, classes=JOINT_NAMES
    )


# --- mpii:<name> ----------------------------------------------------------------------------------
def _bad(path: Path, i: int, key: str, want: str) -> RPGDataError:
    return RPGDataError(
        f"{path}: record {i}: {key!r} must be {want}; fix that record (the file is the "
        f"stacked-hourglass reference's {MPII_FILE}: a list of records with img_paths, "
        f"joint_self, objpos, scale_provided and isValidation)"
    )


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class _Record:
    image: Path
    joints: np.ndarray  # [16, 3]: x, y, vis
    centre: tuple[float, float]
    scale: float
    val: bool


def _check_record(path: Path, images: Path, i: int, rec: Any) -> _Record:
    if not isinstance(rec, dict):
        raise RPGDataError(f"{path}: record {i} must be an object, got {type(rec).__name__}")
    for key in ("img_paths", "joint_self", "objpos", "scale_provided", "isValidation"):
        if key not in rec:
            raise RPGDataError(
                f"{path}: record {i} has no {key!r}; every record needs img_paths, "
                f"joint_self, objpos, scale_provided and isValidation"
            )
    img = rec["img_paths"]
    if not isinstance(img, str) or not img.strip():
        raise _bad(path, i, "img_paths", "an image file name under images/")
    try:
        image = resolve_under(images, img)
    except RPGDataError as err:
        raise RPGDataError(
            f"{path}: record {i}: 'img_paths' {img!r} must name a file under images/ "
            f"(no '..', no absolute path, no link out of it): {err}"
        ) from None
    js = rec["joint_self"]
    if (
        not isinstance(js, list)
        or len(js) != NUM_JOINTS
        or not all(isinstance(p, list) and len(p) == 3 and all(map(_num, p)) for p in js)
    ):
        raise _bad(path, i, "joint_self", "a list of 16 [x, y, visible] number triples")
    pos = rec["objpos"]
    if not isinstance(pos, list) or len(pos) != 2 or not all(map(_num, pos)):
        raise _bad(path, i, "objpos", "[x, y], the person's centre in pixels")
    scale = rec["scale_provided"]
    if not _num(scale) or scale <= 0:
        raise _bad(path, i, "scale_provided", "a positive number (person height / 200 px)")
    is_val = rec["isValidation"]
    if not _num(is_val) or is_val not in (0, 1):
        raise _bad(path, i, "isValidation", "0 (train) or 1 (val)")
    return _Record(
        image, np.array(js, dtype=np.float64), (float(pos[0]), float(pos[1])), float(scale),
        bool(is_val),
    )  # fmt: skip


def _crop(image: Any, rec: _Record, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's crop: centre ``objpos`` moved down by 15 x scale px, side
    1.25 x scale x 200 px (out-of-image parts black), resized to ``size``; the joints mapped
    into it (missing, outside: visible 0)."""
    from PIL import Image

    s = rec.scale
    cx, cy = rec.centre[0], rec.centre[1] + 15 * s
    side = 1.25 * s * 200
    # PIL boxes are in pixel-edge coordinates: pixel i spans [i, i + 1), its centre i + 0.5
    x0, y0 = cx + 0.5 - side / 2, cy + 0.5 - side / 2
    ix0, iy0 = math.floor(x0), math.floor(y0)
    ix1, iy1 = math.ceil(x0 + side), math.ceil(y0 + side)
    padded = image.crop((ix0, iy0, ix1, iy1))  # zero fill outside the image
    box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
    out = padded.resize((size, size), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(out.convert("RGB"), dtype=np.uint8)
    k = size / side
    xy = rec.joints[:, :2]
    mapped = np.stack(
        [(xy[:, 0] - cx + side / 2) * k - 0.5, (xy[:, 1] - cy + side / 2) * k - 0.5], 1
    )
    annotated = (xy[:, 0] > 0) & (xy[:, 1] > 0) & (rec.joints[:, 2] > 0)
    inside = (mapped >= 0).all(1) & (mapped <= size - 1).all(1)
    mapped[~((xy[:, 0] > 0) & (xy[:, 1] > 0))] = 0.0
    return arr, mapped.astype(np.float32), (annotated & inside).astype(np.float32)


def _decode(
    recs: list[_Record], size: int, path: Path, should_stop: StopCheck | None = None
) -> TensorSamples:

    imgs = np.zeros((len(recs), size, size, 3), np.uint8)
    joints = np.zeros((len(recs), NUM_JOINTS, 2), np.float32)
    visible = np.zeros((len(recs), NUM_JOINTS), np.float32)
    cache: tuple[Path, Any] | None = None
    for k, rec in enumerate(recs):
        check_stop(should_stop)
        if cache is None or cache[0] != rec.image:
            try:
                cache = (rec.image, open_image(rec.image).convert("RGB"))
            except RPGImageError as err:
                raise RPGImageError(
                    f"{path}: {err}; put the MPII images under {rec.image.parent} (within "
                    "rpg_core.image_limits) or remove the records that name it"
                ) from None
        imgs[k], joints[k], visible[k] = _crop(cache[1], rec, size)
    samples = _pose_samples(imgs, joints, visible)
    head = samples.targets["head"]
    has = torch.tensor([bool((r.joints[8:10, :2] > 0).all()) for r in recs]) & (head > 0)
    if not bool(has.all()):  # no neck or head top: the median head length of the others
        fallback = float(head[has].median()) if bool(has.any()) else size / 8
        head[~has] = fallback
        log.info(
            "%s: %d people lack a head segment; head = %.2f px", path, int((~has).sum()), fallback
        )
    return samples


def load_mpii(spec: DataSpec, root: Path, should_stop: StopCheck | None = None) -> Datasets:
    """``mpii:<name>``: ``<root>/<name>/mpii_annotations.json`` and ``<root>/<name>/images/``.

    Every record is checked before any image is read. The people are cropped, resized to
    ``image_size`` (64) and held in memory (``isValidation`` picks the split; ``train_subset``
    / ``val_subset`` keep seeded subsets before decoding)."""
    name = spec.dataset.split(":", 1)[1]
    tree = resolve_under(root, name)
    path, images = resolve_under(tree, MPII_FILE), resolve_under(tree, "images")
    if not path.is_file() or not images.is_dir():
        raise RPGDataError(
            f"{tree} must hold {MPII_FILE} (the stacked-hourglass reference's MPII "
            f"annotations) and an images/ folder with the files its img_paths name"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RPGDataError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(raw, list) or not raw:
        raise RPGDataError(f"{path} must be a non-empty JSON list of person records")
    recs = [_check_record(path, images, i, r) for i, r in enumerate(raw)]
    train = [r for r in recs if not r.val]
    val = [r for r in recs if r.val]
    if not train or not val:
        raise RPGDataError(
            f"{path}: needs records with isValidation 0 (train) and 1 (val); "
            f"found {len(train)} and {len(val)}"
        )
    train = [train[i] for i in subset_indices(len(train), spec.train_subset)]
    val = [val[i] for i in subset_indices(len(val), spec.val_subset)]
    size = spec.image_size or POSE_SIZE
    check_memory(
        spec.dataset,
        len(train) + len(val),
        pose_bytes(size),
        "lower data.image_size or set data.train_subset",
    )
    log.info("%s: decoding %d train and %d val people", spec.dataset, len(train), len(val))
    return dense_datasets(
        spec.dataset,
        _decode(train, size, path, should_stop),
        _decode(val, size, path, should_stop),
        task="pose",
        num_classes=NUM_JOINTS,
        classes=JOINT_NAMES,
    )
