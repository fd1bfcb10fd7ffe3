"""rpg_core.image_limits: every image reader checks the declared size before decoding (issue 23,
item 4). Before: a 1 KB PNG of 1,000,000 x 1 pixels cost ``rpg predict`` 2.31 GB (resized by its
shorter side to 32,000,000 x 32), decompression bombs ended in raw DecompressionBombError and
MemoryError tracebacks, a crafted ``.rpg`` saying ``image_size: 8192`` was OOM-killed."""

from __future__ import annotations

import importlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rpg_core
from rpg_core.cli import main as rpg_main
from rpg_core.data.images import FolderImages
from rpg_core.exceptions import RPGFormatError, RPGImageError
from rpg_core.format import read_header
from rpg_core.image_limits import MAX_IMAGE_PIXELS, check_image_size, open_image

ROOT = Path(__file__).resolve().parents[2]
INFO = {
    "dataset": "digits",
    "image_size": 16,
    "in_channels": 1,
    "mean": [0.5],
    "std": [0.25],
    "classes": None,
    "fit": "resize",
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, extra: bytes = b"", idat: bytes | None = None) -> bytes:
    """A grey PNG that *declares* width x height (its pixel data may be short: a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = idat if idat is not None else zlib.compress(b"\0" * (width + 1) * min(height, 4))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")  # fmt: skip


def _tiny() -> torch.nn.Module:
    """A model that takes any input size at once (the refusals come before it runs)."""
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 10)
    ).eval()


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    spec = {"model": {"arch": "resnet18", "width": 0.125, "in_channels": 1, "num_classes": 10}}
    return rpg_core.create_model({**spec, "rpg": {"ring_size": 500}}).eval()


@pytest.fixture
def long_png(tmp_path: Path) -> Path:
    path = tmp_path / "long.png"
    Image.new("L", (1_000_000, 1)).save(path)
    assert path.stat().st_size < 2048  # the "1 KB PNG"
    return path


def test_a_long_thin_image_is_refused_before_it_is_decoded(long_png: Path) -> None:
    with pytest.raises(RPGImageError, match=r"1000000x1 has an aspect ratio of 1,000,000:1"):
        open_image(long_png)
    with pytest.raises(RPGImageError, match="over the limit of 16:1"):
        rpg_core.predict(_tiny(), [long_png], inference=INFO)
    with pytest.raises(RPGImageError, match="the image array: 100000x1"):
        rpg_core.predict(_tiny(), np.zeros((1, 100_000), np.uint8), inference=INFO)
    with pytest.raises(RPGImageError, match="the image: 1x5000"):
        rpg_core.predict(_tiny(), Image.new("L", (1, 5000)), inference=INFO)


@pytest.mark.parametrize(
    ("name", "png", "why"),
    [
        # over PIL's own bomb limit (2 x 89M pixels): PIL raises at open
        ("bomb", _png(100_000, 100_000), "decompression bomb"),
        # between PIL's warning and error limits (a warning otherwise: decoded in full)
        ("warned", _png(10_000, 10_000), "decompression bomb"),
        # under PIL's limits, over ours
        ("large", _png(9_000, 9_000), "81,000,000 pixels, over the limit of 64,000,000"),
        # a text chunk that inflates to 64 MB from 64 KB
        (
            "text bomb",
            _png(4, 4, _chunk(b"zTXt", b"k\0\0" + zlib.compress(b"\0" * 64 * 2**20, 9))),
            "cannot decode the image",
        ),
        ("truncated", _png(64, 64, idat=zlib.compress(b"\0" * 10)), "cannot read the image"),
        ("not an image", b"GIF89a nope", "not an image PIL can read"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_bombs_and_broken_files_are_one_line_errors(
    tmp_path: Path, name: str, png: bytes, why: str
) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(png)
    with pytest.raises(RPGImageError, match=why) as err:
        open_image(path, name="given.png")
    assert str(err.value).startswith("given.png: ") and "\n" not in str(err.value)
    with pytest.raises(RPGImageError, match=why):
        rpg_core.predict(_tiny(), [path], inference=INFO)


def test_bounds_are_the_documented_ones() -> None:
    check_image_size(8000, 8000, "ok")  # 64,000,000 pixels: the limit itself
    check_image_size(1600, 100, "ok")  # 16:1
    with pytest.raises(RPGImageError, match="64,000,001 pixels"):
        check_image_size(64_000_001, 1, "x", max_aspect=1e9)
    with pytest.raises(RPGImageError, match="17:1"):
        check_image_size(1700, 100, "x")
    with pytest.raises(RPGImageError, match="0x5 pixels has no pixels"):
        check_image_size(0, 5, "x")
    assert MAX_IMAGE_PIXELS == 64_000_000


def test_image_folders_check_each_image(tmp_path: Path, long_png: Path) -> None:
    ok = tmp_path / "ok.png"
    Image.new("RGB", (40, 30)).save(ok)
    images = FolderImages([ok, long_png], [0, 1], size=16)
    assert images[0][0].shape == (3, 16, 16)
    with pytest.raises(RPGImageError, match="long.png: 1000000x1"):
        images[1]


def _rewrite_inference(path: Path, **changes: object) -> None:
    """Change the file's inference metadata, keeping its data (and so its checksum) intact."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    info = json.loads(header["__metadata__"]["inference"])
    header["__metadata__"]["inference"] = json.dumps({**info, **changes})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def test_a_crafted_file_asking_for_8192_pixels_is_refused_when_read(tmp_path: Path) -> None:
    path = tmp_path / "m.rpg"
    rpg_core.save_compact(_model(), path, inference=INFO)
    _rewrite_inference(path, image_size=8192)
    for read in (read_header, rpg_core.inspect_compact, rpg_core.load_compact):
        with pytest.raises(RPGFormatError, match=r"inference.image_size must be an int in 1..1024"):
            read(path)
    rpg_core.save_compact(_model(), path, inference=INFO)
    _rewrite_inference(path, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    with pytest.raises(RPGFormatError, match="spec.model.in_channels is 1"):
        read_header(path)


def test_predict_bounds_a_batch_by_its_pixels(tmp_path: Path) -> None:
    """At the largest input (1024 px) a batch is one image; at 16 px the asked 64."""
    seen: list[int] = []
    model = _tiny()
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    images = [np.zeros((20, 20), np.uint8)] * 3
    rpg_core.predict(model, images, inference={**INFO, "image_size": 1024})
    assert seen == [1, 1, 1]
    seen.clear()
    rpg_core.predict(model, images * 30, inference=INFO)
    assert seen == [64, 26]


def test_rpg_predict_says_one_line_and_stays_small(tmp_path: Path, long_png: Path) -> None:
    """The reproduction: ``rpg predict m.rpg long.png`` in a fresh process, its peak memory
    measured; and a MemoryError from anywhere is one line, not a traceback."""
    path = tmp_path / "m.rpg"
    rpg_core.save_compact(_model(), path, inference=INFO)
    code = (  # the peak's growth over what the imports and the model already took
        "import sys\n"
        "import rpg_core.evaluate.predict, rpg_core.format\n"
        "from rpg_core.cli import main\n"
        "rpg_core.format.load_compact(sys.argv[1])\n"
        # VmHWM (KiB): this process's own peak; ru_maxrss would include the parent's RSS at the
        # fork, which can hide any growth when the test suite's process is large
        "def peak(): return int(next(l for l in open('/proc/self/status')"
        " if l.startswith('VmHWM')).split()[1])\n"
        "before = peak()\n"
        "rc = main(['predict', sys.argv[1], sys.argv[2]])\n"
        "print('growth', peak() - before, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(long_png)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert lines[0] == (
        f"rpg predict: error: {long_png}: 1000000x1 has an aspect ratio of 1,000,000:1, over the "
        "limit of 16:1; crop the image to the part to classify"
    )
    growth_mb = int(lines[-1].split()[1]) / 1024
    assert len(lines) == 2 and growth_mb < 50, growth_mb  # was 2.31 GB


def test_a_memory_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def out_of_memory(*_a: object, **_k: object) -> None:
        raise MemoryError

    path = tmp_path / "m.rpg"  # a real file: `rpg predict` reads its task from the header
    rpg_core.save_compact(_model(), path, inference=INFO)
    monkeypatch.setattr(
        importlib.import_module("rpg_core.evaluate.predict"), "predict", out_of_memory
    )
    assert rpg_main(["predict", str(path), "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rpg predict: error: out of memory;") and err.count("\n") == 1
