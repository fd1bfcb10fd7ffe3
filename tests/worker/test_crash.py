"""A worker SIGKILLed mid-run: the job resumes from its last checkpoint on the next worker and
ends exactly like an uninterrupted run, with no duplicated metric points."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from api import crud
from rpg_core.training.engine import train

from .conftest import Stack, tiny_spec
from .test_jobs import no_duplicate_metrics


def test_sigkill_mid_run_resumes_and_matches_an_uninterrupted_run(
    stack: Stack, tmp_path: Path
) -> None:
    st = stack
    spec = tiny_spec("crash", epochs=5, batch_size=16)
    exp_id = st.submit(spec)
    st.start_worker()
    exp = st.wait(exp_id, lambda e: e.status == "running" and (e.epoch or 0) >= 2, timeout=60)
    pid = int((exp.worker or "").rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)  # the process training the job, mid-epoch
    done = st.wait_status(exp_id, "succeeded", "failed", timeout=90)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    with st.session() as s:
        result = crud.get_result(s, exp_id)
    assert result is not None and result["attempt"] == 2
    assert no_duplicate_metrics(st, exp_id) == 5 * len(result["history"][0]) - 5
    baseline = train(crud.get_experiment(st.session(), exp_id).spec)  # type: ignore[union-attr]
    assert done.best_val_acc == baseline.best_val_acc
    assert result["final_val_acc"] == baseline.final_val_acc
    assert [h["val_loss"] for h in result["history"]] == [h["val_loss"] for h in baseline.history]
