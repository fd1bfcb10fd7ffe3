"""The README's first example (rpgify) runs verbatim and tells the truth about what it shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(after_heading: str) -> str:
    text = README.read_text(encoding="utf-8").split(after_heading, 1)[1]
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None, f"no python block after {after_heading!r}"
    return found[1]


def test_the_rpgify_example_runs_verbatim_and_its_ring_is_a_module_with_one_parameter() -> None:
    code = _block("## rpgify: RPG for any network")
    scope: dict[str, object] = {}
    out = io.StringIO()
    torch.manual_seed(0)
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    ring = scope["ring"]
    assert isinstance(ring, torch.nn.Module) and not isinstance(ring, torch.nn.Parameter)
    params = list(ring.parameters())
    assert len(params) == 1 and params[0] is ring.weight
    assert isinstance(ring.weight, torch.nn.Parameter) and ring.weight.numel() == 45_000
    assert ring.weight.grad is not None and ring.weight.grad.abs().sum() > 0
    printed = out.getvalue().splitlines()
    assert "ring=45000" in printed[0]  # the count_params line, as its comment says
    assert printed[1] == "torch.Size([45000])"  # the comment beside the print
    assert "torch.Size([45000])" in code.split("print(ring.weight.shape)")[1].splitlines()[0]
