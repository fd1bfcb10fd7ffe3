"""``rpg inspect``, ``rpg export`` and ``rpg predict``: look into a compact ``.rpg`` file, export a
plain model, or predict with it (classes, pose keypoints, or depth and normal maps)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..exceptions import RPGConfigError
from .output import to_json

EXPORT_FORMATS = ("onnx", "safetensors")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="describe a compact .rpg model file (sizes, rings, spec)")
    p.add_argument("file", help="the .rpg file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--build", action="store_true", help="also rebuild the model and check it")
    p.add_argument("--key", help="the key of a keyed file (with --build)")
    p.set_defaults(func=run_inspect)

    e = sub.add_parser("export", help="export a .rpg file as a plain (materialised) model")
    e.add_argument("file", help="the .rpg file")
    e.add_argument("--to", choices=EXPORT_FORMATS, required=True, help="output format")
    e.add_argument("-o", "--output", help="output path (default: FILE with the new suffix)")
    e.add_argument("--key", help="the key of a keyed file")
    e.add_argument(
        "--input-size", type=int, help="ONNX: input height/width (default 32 cifar, 224 imagenet)"
    )
    e.set_defaults(func=run_export)

    r = sub.add_parser(
        "predict",
        help="predict for images (PNG/JPEG) with a .rpg model: top-k classes, pose keypoints, "
        "or depth and normal maps",
        description="What is predicted follows the model's task. classification: the top-k "
        "classes. pose: each joint's (x, y) in the image's pixels and its score. multitask: "
        "the depth and surface-normal maps at the model's input size, written per image to "
        "OUT_DIR as NAME.depth.npy (float32 [S, S], the training data's depth units), "
        "NAME.normal.npy (float32 [3, S, S], unit x, y, z) and their pictures NAME.depth.png "
        "(viridis, near dark, far yellow) and NAME.normal.png (RGB = (n + 1) / 2), NAME being "
        "the image's file name without its suffix.",
    )
    r.add_argument("file", help="the .rpg file (with its inference metadata)")
    r.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    r.add_argument(
        "-k", "--top-k", type=int, default=3, help="classification: classes to show (default 3)"
    )
    r.add_argument(
        "-o", "--out-dir", default=".",
        help="multitask: the folder for the .npy maps and .png pictures (default: here)",
    )  # fmt: skip
    r.add_argument("--key", help="the key of a keyed file")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=run_predict)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _print_report(info: dict[str, Any]) -> None:
    spec = info["spec"]
    _say(f"{info['path']}: {info['format']} v{info['format_version']}, by {info['writer']}")
    _say(f"model: {json.dumps(spec['model'], sort_keys=True)}")
    _say(f"rpg:   {json.dumps(spec['rpg'], sort_keys=True)}")
    _say(
        f"keyed: {info['keyed']}   ring dtype: {info['ring_dtype']}   checksum: {info['checksum']}"
    )
    for r in info["rings"]:
        seed = "(keyed)" if r["seed"] is None else r["seed"]
        _say(
            f"ring {r['name']!r}: {r['size']:,} elements -> {r['generated']:,} weights in "
            f"{r['layers']} layers (permute={r['permute']}, reflect={r['reflect']}, seed={seed})"
        )
    _say("parameters: " + ", ".join(f"{k} {v:,}" for k, v in info["params"].items()))
    _say("bytes:      " + ", ".join(f"{k} {_human(v)}" for k, v in info["bytes"].items()))
    ref = info["reference_artifacts_bytes"]
    _say(
        f"vs full float32 state_dict ({_human(info['full_float32_state_dict_bytes'])}): "
        f"{info['ratio_vs_full_state_dict']:.1f}x smaller"
    )
    _say(
        f"vs reference code's checkpoint + index .npy + masks .npy ({_human(ref['total'])}): "
        f"{info['ratio_vs_reference']:.1f}x smaller"
    )
    inf = info.get("inference")
    if inf:
        names = inf["classes"]
        _say(
            f"inference: {inf['image_size']}x{inf['image_size']}, {inf['in_channels']} channel(s), "
            f"mean {inf['mean']}, std {inf['std']}, "
            + (
                f"{len(names)} classes ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
                if names
                else "unnamed classes"
            )
        )
    else:
        _say("inference: none stored (rpg predict needs it; see docs/FORMAT.md)")
    if "built" in info:
        _say("rebuilt: " + ", ".join(f"{k} {v:,}" for k, v in info["built"].items()))


def run_inspect(args: argparse.Namespace) -> int:
    from ..format import inspect_compact

    info = inspect_compact(args.file, build=args.build, key=args.key)
    if args.json:
        _say(to_json(info))
    else:
        _print_report(info)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..format import export_plain

    out = Path(args.output) if args.output else Path(args.file).with_suffix(f".{args.to}")
    if out.resolve() == Path(args.file).resolve():
        raise RPGConfigError("-o/--output: the output would overwrite the input file")
    written = export_plain(args.file, out, to=args.to, key=args.key, input_size=args.input_size)
    _say(f"wrote {written}")
    return 0


def _label(label: int, name: str | None) -> str:
    return name if name is not None else f"class {label}"


def run_predict(args: argparse.Namespace) -> int:
    from ..catalog.tasks import DEFAULT_TASK
    from ..format import read_header

    task = read_header(args.file).spec.get("task", DEFAULT_TASK)
    if task == "pose":
        return _predict_pose(args)
    if task == "multitask":
        return _predict_maps(args)
    from ..evaluate.predict import predict

    results = predict(args.file, args.images, top_k=args.top_k, key=args.key)
    if args.json:
        rows = [{"image": i, **r.as_dict()} for i, r in zip(args.images, results, strict=True)]
        _say(to_json(rows))
        return 0
    for image, r in zip(args.images, results, strict=True):
        top = ", ".join(f"{_label(i, n)} {100 * p:.1f}%" for i, n, p in r.top)
        _say(f"{image}: {top}")
    return 0


def _predict_pose(args: argparse.Namespace) -> int:
    from ..evaluate.predict_tasks import predict_keypoints

    results = predict_keypoints(args.file, args.images, key=args.key)
    if args.json:
        rows = [{"image": i, **r.as_dict()} for i, r in zip(args.images, results, strict=True)]
        _say(json.dumps(rows, indent=2))
        return 0
    for image, r in zip(args.images, results, strict=True):
        _say(f"{image} ({r.width}x{r.height}): joint (x, y) in pixels, score")
        for n, k in enumerate(r.keypoints):
            _say(f"  {k.name or f'joint {n}'}: ({k.x:.1f}, {k.y:.1f}) {k.score:.2f}")
    return 0


def _map_stems(images: list[str], out_dir: Path) -> list[Path]:
    """OUT_DIR/<image name without suffix>, numbered where two images share a name."""
    names = [Path(i).stem for i in images]
    clash = {n for n in names if names.count(n) > 1}
    return [out_dir / (f"{n}-{i + 1}" if n in clash else n) for i, n in enumerate(names)]


def _predict_maps(args: argparse.Namespace) -> int:
    from ..evaluate.predict_tasks import map_paths, predict_maps, write_maps

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RPGConfigError(f"-o/--out-dir: {out_dir} is a file, not a folder")
    stems = _map_stems(args.images, out_dir)
    inputs = {Path(i).resolve() for i in args.images}
    for image, stem in zip(args.images, stems, strict=True):
        if any(p.resolve() in inputs for p in map_paths(stem)):
            raise RPGConfigError(f"-o/--out-dir: the maps of {image} would overwrite an input")
    results = predict_maps(args.file, args.images, key=args.key)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for image, stem, r in zip(args.images, stems, results, strict=True):
        paths = write_maps(r, stem)
        rows.append({"image": image, **r.as_dict(), "files": [str(p) for p in paths]})
        if not args.json:
            size = r.depth.shape[-1]
            _say(
                f"{image}: depth and normals {size}x{size} over pixels "
                f"{', '.join(f'{v:.0f}' for v in r.box)} (left, top, right, bottom), depth "
                f"{r.depth.min():.3g}..{r.depth.max():.3g}; wrote {', '.join(map(str, paths))}"
            )
    if args.json:
        _say(json.dumps(rows, indent=2))
    return 0
