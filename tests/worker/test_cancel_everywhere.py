"""Cancel honoured after the training steps too (real worker, PostgreSQL, Redis): a run cancelled
during its final OOD evaluation ends ``cancelled``, never ``succeeded``."""

from __future__ import annotations

import time

from api import crud

from .conftest import Stack, tiny_spec


def test_a_cancel_during_the_final_ood_evaluation_ends_the_run_cancelled(stack: Stack) -> None:
    st = stack
    st.start_worker()
    spec = tiny_spec("cancel-in-ood", epochs=1)
    spec["data"] = {**spec["data"], "num_val": 4000}
    # 4 shifts x 5 severities of 4,000 images: far longer than the 5 s the cancel may take
    spec["eval"] = {
        "ood": [{"shift": s} for s in ("gaussian_noise", "rotation", "gaussian_blur", "occlusion")]
    }
    exp_id = st.submit(spec)

    def in_ood(_exp: object) -> bool:  # the epoch's metrics are written just before the OOD pass
        with st.session() as s:
            return bool(crud.metrics.metric_series(s, exp_id))

    st.wait(exp_id, in_ood, timeout=120)
    r = st.client.post(f"/api/experiments/{exp_id}/cancel", headers=st.auth)
    assert r.status_code in (200, 202), r.text
    asked = time.monotonic()
    exp = st.wait_status(exp_id, "cancelled", "succeeded", "failed", timeout=30)
    took = time.monotonic() - asked
    assert exp.status == "cancelled", (exp.status, exp.error)
    assert took < 5.0, f"the cancel took {took:.1f} s"
    log = "".join(p.read_text() for p in st.logs)
    assert "stop requested during the OOD evaluation" in log, log[-3000:]
