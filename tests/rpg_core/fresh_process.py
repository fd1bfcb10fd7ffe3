"""Test helper: a saved ``.rpg`` file's outputs computed by a fresh Python process (nothing
cached from the process that wrote it), as a user loading the file elsewhere would get them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

_CODE = (
    "import sys, numpy as np, torch\n"
    "from rpg_core.compact import load_compact\n"
    "m = load_compact(sys.argv[1])\n"
    "x = torch.from_numpy(np.load(sys.argv[2], allow_pickle=False))\n"
    "with torch.no_grad(): y = m(x)\n"
    "np.save(sys.argv[3], y.numpy())\n"
)


def fresh_process_outputs(path: Path, x: torch.Tensor, tmp_path: Path) -> np.ndarray:
    """``load_compact(path)(x)`` computed in a new interpreter."""
    inputs, out = tmp_path / "fresh-x.npy", tmp_path / "fresh-y.npy"
    np.save(inputs, x.numpy())
    subprocess.run(
        [sys.executable, "-c", _CODE, str(path), str(inputs), str(out)], check=True, timeout=120
    )
    result: np.ndarray = np.load(out, allow_pickle=False)
    return result
