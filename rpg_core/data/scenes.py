"""Indoor scenes with depth and surface normals: ``synthetic-scenes`` (rooms ray cast in numpy)
and ``scenes:<name>`` (an S3DIS / NYU-style folder of RGB, depth and normal PNGs).

Both give :class:`~.dense.TensorSamples` of RGB uint8 images with the targets

- ``depth``  float32 [N, 1, H, W]: metres along the camera's optical axis (z, not ray length);
- ``normal`` float32 [N, 3, H, W]: the unit surface normal in the camera frame (x right,
  y down, z forward), facing the camera (against the pixel's ray; a level floor is (0, -1, 0),
  a wall straight ahead (0, 0, -1));
- ``mask``   float32 [N, 1, H, W]: 1 where depth and normal are valid (synthetic: all 1).

docs/SYNTHETIC.md describes the renderer and the folder layout.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import RPGDataError
from ..image_limits import open_image
from ..spec import DataSpec
from ..stopping import StopCheck, check_stop
from .dense import TensorSamples, check_memory, dense_datasets, subset_indices
from .images import SPLIT_SEED, Datasets
from .paths import resolve_under

log = logging.getLogger(__name__)

__all__ = [
    "DEPTH_SCALE",
    "MAP_NAMES",
    "Box",
    "SceneParams",
    "Sphere",
    "Texture",
    "load_scene_folder",
    "load_synthetic_scenes",
    "random_scene",
    "render_scenes",
    "synthetic_scenes",
]

MAP_NAMES = ("depth", "normal_x", "normal_y", "normal_z")  # the 4 output channels
DEPTH_SCALE = 512.0  # scenes:<name> default: raw 16-bit / 512 = metres (S3DIS)
# defaults: what the default recipe trains past the per-pixel mean maps on a 2-core CPU in a few
# minutes (docs/BENCHMARKS.md, "Table 5 twin"); real scene folders default to 64 px
SCENES_TRAIN, SCENES_VAL, SCENES_SIZE = 2000, 200, 32
SCENE_FOLDER_SIZE = 64  # scenes:<name>: data.image_size unset
_SEED_TAG = 0x5CE7  # the synthetic-scenes stream; train and val add 1 and 2
_CHUNK = 32  # scenes ray cast together
_CHUNK_PIXELS = 16 * 64 * 64  # at most this many rays at once (a stop check between chunks)
_GRID = 8  # the noise texture's lattice
_EPS = 1e-4


@dataclass(frozen=True)
class Texture:
    """An albedo pattern in surface coordinates (metres): ``kind`` 0 checker, 1 stripes,
    2 value noise, 3 plain; ``c1``/``c2`` linear RGB in [0, 1]."""

    kind: int
    scale: float
    angle: float
    c1: tuple[float, float, float]
    c2: tuple[float, float, float]
    grid: np.ndarray = field(default_factory=lambda: np.zeros((_GRID, _GRID)), compare=False)


@dataclass(frozen=True)
class Box:
    """A box standing on the floor: centre (x, y), rotation about the vertical, half sizes
    along its own x and y, height."""

    x: float
    y: float
    yaw: float
    hx: float
    hy: float
    height: float


@dataclass(frozen=True)
class Sphere:
    """A ball resting on the floor at (x, y) with radius ``r``."""

    x: float
    y: float
    r: float


@dataclass(frozen=True)
class SceneParams:
    """One room and camera. World frame: x, y along the walls, z up; the room spans
    [0, room] with the floor at z = 0. The camera looks along yaw (from +x towards +y) and
    pitch (up positive), rolled about its axis; ``fov`` horizontal, radians.

    ``textures``: floor, ceiling, walls, then one per box, then one per sphere."""

    room: tuple[float, float, float]
    camera: tuple[float, float, float]
    yaw: float
    pitch: float
    roll: float
    fov: float
    boxes: tuple[Box, ...]
    spheres: tuple[Sphere, ...]
    textures: tuple[Texture, ...]
    light: tuple[float, float, float]
    ambient: float = 0.3
    light_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure: float = 1.0
    noise: float = 0.0  # std of the added noise, in [0, 1] intensity
    noise_seed: int = 0

    def rotation(self) -> np.ndarray:
        """Camera to world (columns: the camera's right, down and forward axes in the world)."""
        cy, sy, cp, sp = math.cos(self.yaw), math.sin(self.yaw), math.cos(self.pitch), math.sin(self.pitch)  # fmt: skip
        fwd = np.array([cp * cy, cp * sy, sp])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(fwd, right)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        right, down = cr * right + sr * down, -sr * right + cr * down
        return np.stack([right, down, fwd], axis=1)


# --- random scenes --------------------------------------------------------------------------------
def _texture(rng: np.random.Generator) -> Texture:
    kind = int(rng.choice(4, p=[0.3, 0.25, 0.3, 0.15]))
    c1 = rng.uniform(0.1, 0.95, 3)
    c2 = c1 * rng.uniform(0.35, 0.85) if rng.random() < 0.5 else rng.uniform(0.1, 0.95, 3)
    return Texture(
        kind=kind,
        scale=float(rng.uniform(0.1, 0.8)),
        angle=float(rng.uniform(0, math.pi)),
        c1=tuple(float(v) for v in c1),  # type: ignore[arg-type]
        c2=tuple(float(v) for v in c2),  # type: ignore[arg-type]
        grid=rng.random((_GRID, _GRID)),
    )


def random_scene(rng: np.random.Generator) -> SceneParams:
    """A random room (3-8 m by 3-8 m, 2.4-3.4 m high), camera (0.8-1.9 m high, any yaw,
    pitch -32 to +9 degrees, roll about 3 degrees, horizontal field of view 50-75 degrees),
    0-4 boxes and 0-2 balls on the floor away from the camera, a ceiling light and textures."""
    w, d, h = rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.4, 3.4)
    cam = np.array(
        [rng.uniform(0.4, w - 0.4), rng.uniform(0.4, d - 0.4), rng.uniform(0.8, min(1.9, h - 0.3))]
    )
    boxes: list[Box] = []
    for _ in range(int(rng.integers(0, 5))):
        hx, hy, height = rng.uniform(0.15, 0.7), rng.uniform(0.15, 0.7), rng.uniform(0.2, 1.6)
        reach = math.hypot(hx, hy)
        if 2 * reach >= min(w, d) - 0.2:
            continue
        x, y = (
            rng.uniform(reach + 0.05, w - reach - 0.05),
            rng.uniform(reach + 0.05, d - reach - 0.05),
        )
        yaw = 0.0 if rng.random() < 0.5 else float(rng.uniform(0, math.pi / 2))
        if math.hypot(cam[0] - x, cam[1] - y) > reach + 0.3 or cam[2] > height + 0.3:
            boxes.append(Box(float(x), float(y), yaw, float(hx), float(hy), float(height)))
    spheres: list[Sphere] = []
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.12, 0.5)
        x, y = rng.uniform(r + 0.05, w - r - 0.05), rng.uniform(r + 0.05, d - r - 0.05)
        if np.linalg.norm(cam - [x, y, r]) > r + 0.3:
            spheres.append(Sphere(float(x), float(y), float(r)))
    textures = tuple(_texture(rng) for _ in range(3 + len(boxes) + len(spheres)))
    # look towards a random point of the room, so most views see its depth, not one wall
    target = rng.uniform([0.2 * w, 0.2 * d], [0.8 * w, 0.8 * d])
    yaw = math.atan2(target[1] - cam[1], target[0] - cam[0]) + float(rng.normal(0, 0.35))
    light = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * d, h - rng.uniform(0.05, 0.4))
    return SceneParams(
        room=(float(w), float(d), float(h)),
        camera=(float(cam[0]), float(cam[1]), float(cam[2])),
        yaw=yaw,
        pitch=float(rng.uniform(-0.55, 0.15)),
        roll=float(rng.normal(0, 0.05)),
        fov=math.radians(float(rng.uniform(50, 75))),
        boxes=tuple(boxes),
        spheres=tuple(spheres),
        textures=textures,
        light=tuple(float(v) for v in light),  # type: ignore[arg-type]
        ambient=float(rng.uniform(0.1, 0.3)),
        light_colour=tuple(float(v) for v in 1 + rng.uniform(-0.12, 0.12, 3)),  # type: ignore[arg-type]
        exposure=float(rng.uniform(0.8, 1.3)),
        noise=float(rng.uniform(0.005, 0.025)),
        noise_seed=int(rng.integers(2**31)),
    )


# --- the ray caster -------------------------------------------------------------------------------
def _take(table: np.ndarray, sid: np.ndarray) -> np.ndarray:
    """``table`` [B, S, ...] at per-pixel surface ids ``sid`` [B, P]: [B, P, ...]."""
    return table[np.arange(len(sid))[:, None], sid]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The dot product over a last axis of 3 (faster than a reduction over it)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _slab(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per ray, the entry and exit distances of an axis-aligned box and their axes."""
    t_in = t_out = None
    ax_in = ax_out = np.zeros((), np.int64)
    for a in range(3):
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d[..., a]
            t1, t2 = (lo[..., a] - o[..., a]) * inv, (hi[..., a] - o[..., a]) * inv
        near, far = np.fmin(t1, t2), np.fmax(t1, t2)
        if t_in is None or t_out is None:
            t_in, t_out = near, far
            ax_in = ax_out = np.zeros(near.shape, np.int64)
            continue
        later, sooner = near > t_in, far < t_out
        t_in, ax_in = np.where(later, near, t_in), np.where(later, a, ax_in)
        t_out, ax_out = np.where(sooner, far, t_out), np.where(sooner, a, ax_out)
    assert t_in is not None and t_out is not None
    return t_in, t_out, ax_in, ax_out


def _axis_normal(axis: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The unit axis ``axis``, pointing against the ray direction ``d`` along it."""
    n = np.zeros(d.shape, np.float32)
    comp = np.take_along_axis(d, axis[..., None], -1)
    np.put_along_axis(n, axis[..., None], -np.sign(comp).astype(np.float32), -1)
    return n


def _other_two(p: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Surface coordinates on an axis-aligned face: the two coordinates other than ``axis``."""
    first = np.where(axis == 0, p[..., 1], p[..., 0])
    second = np.where(axis == 2, p[..., 1], p[..., 2])
    return np.stack([first, second], -1)


def _textures(
    uv: np.ndarray, sid: np.ndarray, per_scene: list[tuple[Texture, ...]], ns: int
) -> np.ndarray:
    """Albedo [B, P, 3] from per-surface textures at surface coordinates ``uv``."""
    b = len(per_scene)
    kind = np.full((b, ns), 3, np.int64)
    scale, angle = np.ones((b, ns), np.float32), np.zeros((b, ns), np.float32)
    c1, c2 = np.zeros((b, ns, 3), np.float32), np.zeros((b, ns, 3), np.float32)
    grid = np.zeros((b, ns, _GRID, _GRID), np.float32)
    for i, texs in enumerate(per_scene):
        for k, t in enumerate(texs):
            kind[i, k], scale[i, k], angle[i, k] = t.kind, t.scale, t.angle
            c1[i, k], c2[i, k], grid[i, k] = t.c1, t.c2, t.grid
    ca, sa, sc = np.cos(_take(angle, sid)), np.sin(_take(angle, sid)), _take(scale, sid)
    u = (uv[..., 0] * ca + uv[..., 1] * sa) / sc
    v = (-uv[..., 0] * sa + uv[..., 1] * ca) / sc
    fu, fv = np.floor(u), np.floor(v)
    checker = (fu + fv) % 2
    stripes = fu % 2
    # value noise: bilinear on a wrapped lattice
    iu, iv = fu.astype(np.int64) % _GRID, fv.astype(np.int64) % _GRID
    au, av = u - fu, v - fv
    au, av = au * au * (3 - 2 * au), av * av * (3 - 2 * av)
    flat = grid.reshape(b * ns, _GRID * _GRID)
    row = np.arange(b)[:, None] * ns + sid

    def at(du: int, dv: int) -> np.ndarray:
        return flat[row, ((iu + du) % _GRID) * _GRID + (iv + dv) % _GRID]

    noise = (at(0, 0) * (1 - au) + at(1, 0) * au) * (1 - av) + (at(0, 1) * (1 - au) + at(1, 1) * au) * av  # fmt: skip
    kk = _take(kind, sid)
    t = np.select([kk == 0, kk == 1, kk == 2], [checker, stripes, noise], 0.0).astype(np.float32)
    a, z = _take(c1, sid), _take(c2, sid)
    return a + (z - a) * t[..., None]


def render_scenes(
    scenes: list[SceneParams], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray cast ``scenes`` at ``size`` x ``size`` (one ray per pixel centre): RGB uint8
    [B, 3, H, W], depth float32 [B, 1, H, W] (metres along the optical axis) and normal
    float32 [B, 3, H, W] (unit, camera frame, facing the camera)."""
    b, p = len(scenes), size * size
    nb = max((len(s.boxes) for s in scenes), default=0)
    nsph = max((len(s.spheres) for s in scenes), default=0)
    ns = 3 + nb + nsph
    rot = np.stack([s.rotation() for s in scenes]).astype(np.float32)  # [B, 3, 3]
    focal = np.array([(size / 2) / math.tan(s.fov / 2) for s in scenes], np.float32)
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    d_cam = np.empty((b, p, 3), np.float32)
    d_cam[..., 0] = (xs.ravel() - c)[None] / focal[:, None]
    d_cam[..., 1] = (ys.ravel() - c)[None] / focal[:, None]
    d_cam[..., 2] = 1.0
    d = np.matmul(d_cam, rot.transpose(0, 2, 1))  # world directions; t along them is depth
    o = np.array([s.camera for s in scenes], np.float32)[:, None, :]  # [B, 1, 3]

    # the room, from inside: the nearest exit through one of its six planes
    room = np.array([s.room for s in scenes], np.float32)[:, None, :]
    _, t_best, _, axis = _slab(o, d, np.zeros_like(room), room)
    normal = _axis_normal(axis, d)
    hit_p = o + t_best[..., None] * d
    uv = _other_two(hit_p, axis)
    sid = np.where(axis == 2, np.where(normal[..., 2] > 0, 0, 1), 2)

    for k in range(nb):
        on = np.array([k < len(s.boxes) for s in scenes])
        bx = [s.boxes[k] if k < len(s.boxes) else Box(0, 0, 0, 0.1, 0.1, 0.1) for s in scenes]
        cy_ = np.array([math.cos(q.yaw) for q in bx], np.float32)[:, None]
        sy_ = np.array([math.sin(q.yaw) for q in bx], np.float32)[:, None]
        centre = np.array([[q.x, q.y, 0.0] for q in bx], np.float32)[:, None, :]

        def to_local(v: np.ndarray, cy_: np.ndarray = cy_, sy_: np.ndarray = sy_) -> np.ndarray:
            return np.stack(
                [v[..., 0] * cy_ + v[..., 1] * sy_, -v[..., 0] * sy_ + v[..., 1] * cy_, v[..., 2]],
                -1,
            )

        ol, dl = to_local(o - centre), to_local(d)
        half = np.array([[q.hx, q.hy, q.height] for q in bx], np.float32)[:, None, :]
        lo = half * np.array([-1, -1, 0], np.float32)
        tn, tf, ax, _ = _slab(ol, dl, lo, half)
        closer = (tn <= tf) & (tn > _EPS) & (tn < t_best) & on[:, None]
        nl = _axis_normal(ax, dl)
        nw = np.stack([nl[..., 0] * cy_ - nl[..., 1] * sy_, nl[..., 0] * sy_ + nl[..., 1] * cy_, nl[..., 2]], -1)  # fmt: skip
        t_best = np.where(closer, tn, t_best)
        normal = np.where(closer[..., None], nw, normal)
        uv = np.where(closer[..., None], _other_two(ol + tn[..., None] * dl, ax), uv)
        sid = np.where(closer, 3 + k, sid)

    for k in range(nsph):
        on = np.array([k < len(s.spheres) for s in scenes])
        sp = [s.spheres[k] if k < len(s.spheres) else Sphere(0, 0, 0.01) for s in scenes]
        centre = np.array([[q.x, q.y, q.r] for q in sp], np.float32)[:, None, :]
        r = np.array([q.r for q in sp], np.float32)[:, None]
        oc = o - centre
        bq, aq = _dot(d, oc), _dot(d, d)
        disc = bq * bq - aq * (_dot(oc, oc) - r * r)
        t = (-bq - np.sqrt(np.maximum(disc, 0))) / aq
        closer = (disc >= 0) & (t > _EPS) & (t < t_best) & on[:, None]
        n = (o + t[..., None] * d - centre) / r[..., None]
        sph_uv = np.stack([np.arctan2(n[..., 1], n[..., 0]) * r, n[..., 2] * r], -1)
        t_best = np.where(closer, t, t_best)
        normal = np.where(closer[..., None], n, normal)
        uv = np.where(closer[..., None], sph_uv, uv)
        sid = np.where(closer, 3 + nb + k, sid)

    # shading: Lambert from a point light (inverse-square-like falloff) plus ambient, then
    # exposure, gamma and noise
    padded = [_pad_textures(s, nb, nsph) for s in scenes]
    albedo = _textures(uv, sid, padded, ns)
    pos = o + t_best[..., None] * d
    light = np.array([s.light for s in scenes], np.float32)[:, None, :]
    to_light = light - pos
    dist = np.sqrt(_dot(to_light, to_light))
    lam = np.maximum(_dot(normal, to_light) / np.maximum(dist, 1e-6), 0.0)
    amb = np.array([s.ambient for s in scenes], np.float32)[:, None]
    shade = amb + (1 - amb) * lam * (6.0 / (2.0 + dist * dist))
    colour = np.array([s.light_colour for s in scenes], np.float32)[:, None, :]
    expo = np.array([s.exposure for s in scenes], np.float32)[:, None, None]
    lin = albedo * shade[..., None] * colour * expo
    rgb = np.sqrt(np.clip(lin, 0, 1))  # gamma 2
    for i, s in enumerate(scenes):
        if s.noise > 0:
            rgb[i] += np.random.default_rng(s.noise_seed).normal(0, s.noise, (p, 3)).astype(np.float32)  # fmt: skip
    rgb8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)

    n_cam = np.matmul(normal.astype(np.float32), rot)  # R^T n, as rows
    n_cam /= np.sqrt(_dot(n_cam, n_cam))[..., None]
    flip = _dot(n_cam, d_cam) > 0
    n_cam[flip] *= -1
    shape = (b, size, size)
    return (
        rgb8.reshape(*shape, 3).transpose(0, 3, 1, 2).copy(),
        t_best.reshape(b, 1, size, size).astype(np.float32),
        n_cam.reshape(*shape, 3).transpose(0, 3, 1, 2).astype(np.float32).copy(),
    )


def _pad_textures(s: SceneParams, nb: int, nsph: int) -> tuple[Texture, ...]:
    """``s``'s textures laid out for ``nb`` box and ``nsph`` sphere slots."""
    plain = Texture(3, 1.0, 0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    t = list(s.textures)
    rooms, boxes, balls = t[:3], t[3 : 3 + len(s.boxes)], t[3 + len(s.boxes) :]
    return tuple(
        rooms + boxes + [plain] * (nb - len(boxes)) + balls + [plain] * (nsph - len(balls))
    )


def synthetic_scenes(
    indices: list[int], size: int, *, split: str, should_stop: StopCheck | None = None
) -> TensorSamples:
    """The synthetic-scenes samples ``indices`` of ``split`` (train or val: different seeds).
    Scene ``i`` depends only on (split, i, size), so a subset renders only what it keeps.
    ``should_stop`` is checked before each chunk (at most :data:`_CHUNK_PIXELS` rays; raises
    ``rpg_core.stopping.Stopped``)."""
    stream = {"train": 1, "val": 2}[split]
    n = len(indices)
    x = np.zeros((n, 3, size, size), np.uint8)
    depth = np.zeros((n, 1, size, size), np.float32)
    normal = np.zeros((n, 3, size, size), np.float32)
    step = max(1, min(_CHUNK, _CHUNK_PIXELS // (size * size)))
    for start in range(0, n, step):
        check_stop(should_stop)
        chunk = indices[start : start + step]
        scenes = [random_scene(np.random.default_rng([SPLIT_SEED, _SEED_TAG, stream, i])) for i in chunk]  # fmt: skip
        sl = slice(start, start + len(chunk))
        x[sl], depth[sl], normal[sl] = render_scenes(scenes, size)
    return _scene_samples(x, depth, normal, np.ones_like(depth))


def _scene_samples(
    x: np.ndarray, depth: np.ndarray, normal: np.ndarray, mask: np.ndarray
) -> TensorSamples:
    return TensorSamples(
        torch.from_numpy(x),
        {
            "depth": torch.from_numpy(depth),
            "normal": torch.from_numpy(normal),
            "mask": torch.from_numpy(mask),
        },
    )


def scene_bytes(size: int) -> int:
    return size * size * (3 + 4 * 5)


def load_synthetic_scenes(spec: DataSpec, should_stop: StopCheck | None = None) -> Datasets:
    """``synthetic-scenes``: ``num_train`` (2000) / ``num_val`` (200) rooms at ``image_size``
    (32); ``train_subset`` / ``val_subset`` keep a seeded subset (rendering only those)."""
    size = spec.image_size or SCENES_SIZE
    n_train, n_val = spec.num_train or SCENES_TRAIN, spec.num_val or SCENES_VAL
    tr = subset_indices(n_train, spec.train_subset)
    va = subset_indices(n_val, spec.val_subset)
    check_memory(
        "synthetic-scenes",
        len(tr) + len(va),
        scene_bytes(size),
        "lower data.num_train, num_val or image_size",
    )
    train = synthetic_scenes(tr, size, split="train", should_stop=should_stop)
    val = synthetic_scenes(va, size, split="val", should_stop=should_stop)
    return dense_datasets(
        "synthetic-scenes", train, val, task="multitask", num_classes=4, classes=MAP_NAMES
    )


# --- scenes:<name> --------------------------------------------------------------------------------
def _depth_scale(tree: Path) -> float:
    path = resolve_under(tree, "scene.json")
    if not path.exists():
        return DEPTH_SCALE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RPGDataError(f"{path} is not valid JSON: {err}") from None
    scale = meta.get("depth_scale", DEPTH_SCALE) if isinstance(meta, dict) else None
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
        raise RPGDataError(
            f"{path}: must be an object with a positive number 'depth_scale' (raw 16-bit depth "
            f'/ depth_scale = metres; S3DIS uses 512), e.g. {{"depth_scale": 512}}'
        )
    return float(scale)


def _ids(split_dir: Path) -> list[str]:
    rgb = split_dir / "rgb"
    if not rgb.is_dir():
        raise RPGDataError(f"{rgb} not found; a scenes folder holds {{train,val}}/{{rgb,depth,normal}}/<id>.png")  # fmt: skip
    return sorted(f.stem for f in rgb.iterdir() if f.suffix.lower() == ".png")


def _resize_crop(img: Any, size: int, resample: Any) -> np.ndarray:
    """Shorter side to ``size``, then the centre square (as image folders do)."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def _read_scene(base: Path, split_dir: Path, sid: str, size: int, scale: float) -> tuple[np.ndarray, ...]:  # fmt: skip
    from PIL import Image

    rel = str(split_dir.relative_to(base))
    files = {k: resolve_under(base, rel, k, f"{sid}.png") for k in ("rgb", "depth", "normal")}
    for k in ("depth", "normal"):
        if not files[k].is_file():
            raise RPGDataError(
                f"{files['rgb']} has no {k} counterpart {files[k]}; add it or remove the image"
            )
    opened = {k: open_image(f) for k, f in files.items()}  # sizes checked before decoding
    try:
        sizes = {k: im.size for k, im in opened.items()}
        if len(set(sizes.values())) != 1:
            raise RPGDataError(
                f"{split_dir}: {sid}.png differs in size between rgb, depth and normal "
                f"({sizes}); save the three at the same resolution"
            )
        dimg = opened["depth"]
        if dimg.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise RPGDataError(
                f"{files['depth']} is a {dimg.mode} image, not 16-bit depth; save depth as a "
                f"16-bit grayscale PNG of metres x depth_scale (scene.json)"
            )
        raw_depth = np.asarray(dimg, dtype=np.float32)
        if raw_depth.ndim != 2 or raw_depth.max(initial=0) > 65535 or raw_depth.min(initial=0) < 0:
            raise RPGDataError(f"{files['depth']}: not 16-bit depth values; save a 16-bit grayscale PNG")  # fmt: skip
        raw_normal = np.asarray(opened["normal"].convert("RGB"), dtype=np.uint8)
        rgb = opened["rgb"].convert("RGB")
    except OSError as err:
        raise RPGDataError(f"cannot decode {split_dir}/*/{sid}.png: {err}") from None
    finally:
        for im in opened.values():
            im.close()
    valid = (raw_depth > 0) & raw_normal.any(-1)
    near = Image.Resampling.NEAREST
    x = _resize_crop(rgb, size, Image.Resampling.BILINEAR).transpose(2, 0, 1)
    depth = _resize_crop(Image.fromarray(raw_depth / scale, mode="F"), size, near)
    nrm = _resize_crop(Image.fromarray(raw_normal), size, near).astype(np.float32) / 255 * 2 - 1
    mask = _resize_crop(Image.fromarray(valid.astype(np.uint8) * 255), size, near) > 0
    length = np.linalg.norm(nrm, axis=-1, keepdims=True)
    nrm = np.where(mask[..., None], nrm / np.maximum(length, 1e-6), 0.0)
    depth = np.where(mask, depth, 0.0)
    return x, depth[None], nrm.transpose(2, 0, 1), mask[None].astype(np.float32)


def _scene_split(base: Path, split_dir: Path, subset: int | None, size: int, scale: float, should_stop: StopCheck | None = None) -> TensorSamples:  # fmt: skip
    ids = _ids(split_dir)
    if not ids:
        raise RPGDataError(f"{split_dir / 'rgb'} holds no <id>.png images")
    ids = [ids[i] for i in subset_indices(len(ids), subset)]
    n = len(ids)
    x = np.zeros((n, 3, size, size), np.uint8)
    depth = np.zeros((n, 1, size, size), np.float32)
    normal = np.zeros((n, 3, size, size), np.float32)
    mask = np.zeros((n, 1, size, size), np.float32)
    for k, sid in enumerate(ids):
        check_stop(should_stop)
        x[k], depth[k], normal[k], mask[k] = _read_scene(base, split_dir, sid, size, scale)
    return _scene_samples(x, depth, normal, mask)


def load_scene_folder(spec: DataSpec, root: Path, should_stop: StopCheck | None = None) -> Datasets:
    """``scenes:<name>``: ``<root>/<name>/{train,val}/{rgb,depth,normal}/<id>.png`` and an
    optional ``scene.json`` (``depth_scale``, default 512). Decoded into memory at
    ``image_size`` (64): shorter side resized (bilinear RGB, nearest depth / normal / mask),
    centre square crop."""
    name = spec.dataset.split(":", 1)[1]
    base = Path(root).resolve()
    tree = resolve_under(base, name)
    if not tree.is_dir():
        raise RPGDataError(f"{tree} not found; put the scenes:{name} folder under the data root")
    scale = _depth_scale(tree)
    size = spec.image_size or SCENE_FOLDER_SIZE
    tr_dir, va_dir = resolve_under(tree, "train"), resolve_under(tree, "val")
    n = sum(len(_ids(d)) for d in (tr_dir, va_dir))
    n = min(n, (spec.train_subset or n) + (spec.val_subset or n))
    check_memory(spec.dataset, n, scene_bytes(size), "lower data.image_size or set data.train_subset")  # fmt: skip
    return dense_datasets(
        spec.dataset,
        _scene_split(base, tr_dir, spec.train_subset, size, scale, should_stop),
        _scene_split(base, va_dir, spec.val_subset, size, scale, should_stop),
        task="multitask",
        num_classes=4,
        classes=MAP_NAMES,
    )
