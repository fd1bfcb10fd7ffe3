"""Table 1 end to end: a sweep with model.recurrence goes REST -> Celery worker -> PostgreSQL ->
API, with the inference time per image stored in every result, the .rpg download rebuilding
the recurrent model, and the sweep's accuracy-against-time figure built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rpg_core import count_params, rings
from rpg_core.format import load_compact

from .conftest import Stack, tiny_spec


def _sweep() -> dict[str, Any]:
    base = tiny_spec("t1", epochs=1, ring=None)
    base["model"] = {"arch": "mdeq", "width": 0.25, "recurrence": {"mode": "rpg", "repeats": 2}}
    return {
        "name": "t1-e2e",
        "base": base,
        "grid": {"model.recurrence.mode": ["rpg", "shared"]},
        "extra": [
            {
                "name": "eq",
                "model": {"recurrence": {"mode": "equilibrium", "repeats": 1, "max_iter": 8}},
            }
        ],
    }


def test_a_recurrence_sweep_stores_inference_time_and_plots_it(
    stack: Stack, tmp_path: Path
) -> None:
    st = stack
    st.start_worker()
    r = st.client.post("/api/sweeps", json=_sweep(), headers=st.auth)
    assert r.status_code == 201, r.text
    body = r.json()
    sweep_id, ids = body["id"], body["experiment_ids"]
    assert len(ids) == 3
    modes = {}
    for exp_id in ids:
        exp = st.wait_status(exp_id, "succeeded", "failed", timeout=180)
        assert exp.status == "succeeded", exp.error
        detail = st.client.get(f"/api/experiments/{exp_id}", headers=st.auth).json()
        result = detail["result"]
        mode = detail["spec"]["model"]["recurrence"]["mode"]
        assert result["spec"]["model"]["recurrence"]["mode"] == mode
        assert isinstance(result["inference_ms_per_image"], float)
        assert result["inference_ms_per_image"] > 0
        modes[mode] = (exp_id, result)
    assert set(modes) == {"rpg", "shared", "equilibrium"}
    # the same parameters but the rpg run's (repeats - 1) extra norm sets
    shared, rpg = modes["shared"][1]["params"], modes["rpg"][1]["params"]
    assert rpg["ring"] + rpg["conv"] == shared["conv"] and rpg["ring"] > 0
    # the stored .rpg file rebuilds the recurrent model with its ring
    model_bytes = st.client.get(f"/api/experiments/{modes['rpg'][0]}/model", headers=st.auth)
    assert model_bytes.status_code == 200
    path = tmp_path / "rpg.rpg"
    path.write_bytes(model_bytes.content)
    loaded = load_compact(path)
    assert len(rings(loaded)) == 1 and count_params(loaded).ring == rpg["ring"]
    # the dashboard's figure: one point per run, a series per recurrence mode
    fig = st.client.get(f"/ui/figures/sweeps/{sweep_id}/speed", headers=st.auth).json()
    assert fig["points"] == 3
    groups = {t["meta"]["group"]: t for t in fig["figure"]["data"]}
    assert set(groups) == {"rpg", "shared", "equilibrium"}
    eq_id, eq_result = modes["equilibrium"]
    assert groups["equilibrium"]["x"] == [eq_result["inference_ms_per_image"]]
