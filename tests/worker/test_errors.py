"""Which job errors are retried, and error messages without the server's folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from rpg_core.exceptions import RPGConfigError, RPGDataError, RPGTrainingError
from worker.errors import is_permanent, redact


class _M(BaseModel):
    x: int


def _validation_error() -> ValidationError:
    try:
        _M.model_validate({"x": "no"})
    except ValidationError as err:
        return err
    raise AssertionError


@pytest.mark.parametrize(
    "err",
    [
        RPGConfigError("x"),
        RPGDataError("imagefolder:missing"),
        RPGTrainingError("loss is NaN"),
        IndexError("Target 3 is out of bounds."),
        KeyError("conv1"),
        TypeError("x"),
        _validation_error(),
    ],
)
def test_permanent_errors_are_not_retried(err: Exception) -> None:
    assert is_permanent(err)


@pytest.mark.parametrize(
    "err",
    [
        OSError(28, "No space left on device"),
        FileExistsError("in the way"),
        ConnectionError("broker"),
        TimeoutError(),
        RuntimeError("CUDA error: an illegal memory access"),
        Exception("unknown"),
    ],
)
def test_transient_errors_are_retried(err: Exception) -> None:
    assert not is_permanent(err)


def test_redact_shows_folders_by_name(tmp_path: Path) -> None:
    root = tmp_path / "data"
    msg = f"{root.resolve()}/x must hold train/ and val/; also {tmp_path}/art/1.rpg"
    out = redact(msg, data_root=root, artifact_dir=tmp_path / "art")
    assert out == "<data root>/x must hold train/ and val/; also <artifact dir>/1.rpg"
    assert redact("no paths here", data_root=Path(".")) == "no paths here"
