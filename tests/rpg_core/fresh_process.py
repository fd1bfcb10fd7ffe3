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
    "from rpg_core.format import load_compact\n"
    "def flat(y):\n"
    "    if isinstance(y, torch.Tensor): return y.reshape(-1)\n"
    "    if isinstance(y, dict): return torch.cat([flat(y[k]) for k in sorted(y)])\n"
    "    return torch.cat([flat(v) for v in y])\n"
    "m = load_compact(sys.argv[1])\n"
    "x = torch.from_numpy(np.load(sys.argv[2], allow_pickle=False))\n"
    "with torch.no_grad(): y = m(x)\n"
    "np.save(sys.argv[3], y.numpy() if isinstance(y, torch.Tensor) else flat(y).numpy())\n"
)


def flat_outputs(y: object) -> np.ndarray:
    """A stacked model's outputs (a list of dicts of tensors) as one flat array, in the order
    the fresh process flattens them (a plain tensor: its values as they are)."""
    if isinstance(y, torch.Tensor):
        return y.numpy()

    def flat(v: object) -> torch.Tensor:
        if isinstance(v, torch.Tensor):
            return v.reshape(-1)
        if isinstance(v, dict):
            return torch.cat([flat(v[k]) for k in sorted(v)])
        assert isinstance(v, list | tuple)
        return torch.cat([flat(u) for u in v])

    return flat(y).numpy()


def fresh_process_outputs(path: Path, x: torch.Tensor, tmp_path: Path) -> np.ndarray:
    """``load_compact(path)(x)`` computed in a new interpreter."""
    inputs, out = tmp_path / "fresh-x.npy", tmp_path / "fresh-y.npy"
    np.save(inputs, x.numpy())
    subprocess.run(
        [sys.executable, "-c", _CODE, str(path), str(inputs), str(out)], check=True, timeout=120
    )
    result: np.ndarray = np.load(out, allow_pickle=False)
    return result
