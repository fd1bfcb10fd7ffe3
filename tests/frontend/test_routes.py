"""The dashboard's own routes through the ASGI app (SQLite; no browser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import crud
from api.migrate import upgrade
from api.settings import Settings
from api.status import STATUSES, page_data
from frontend.routes import PLOTLY_URL, _page_json
from studio.app import create_app

from .conftest import spec


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp: Path = tmp_path_factory.mktemp("routes")
    url = f"sqlite:///{tmp / 'rpg.db'}"
    upgrade(url)
    app = create_app(Settings(database_url=url, broker_url=None, artifact_dir=tmp / "a",
                              auto_migrate=False))  # fmt: skip
    with app.state.sessionmaker() as s:
        crud.create_experiment(s, spec("queued-one"))
        s.commit()
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    "path", ["/", "/runs/1", "/power-law", "/similarity", "/sweeps", "/generalization"]
)
def test_pages_are_html_with_their_script(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'type="module"' in r.text and "cdn" not in r.text.lower()
    script = r.text.split('<script type="module" src="')[1].split('"')[0]
    assert client.get(script).status_code == 200


def test_pages_carry_the_job_statuses_of_api_status(client: TestClient) -> None:
    text = client.get("/").text
    served = text.split('<script type="application/json" id="job-statuses">')[1]
    assert json.loads(served.split("</script>")[0]) == page_data()
    assert "".join(f"<option>{s}</option>" for s in STATUSES) in text  # the runs filter


def test_page_json_cannot_close_its_script_tag() -> None:
    assert "</script>" not in _page_json({"x": "</script><b>"})
    assert json.loads(_page_json({"x": "</script>"})) == {"x": "</script>"}


def test_plotly_is_served_from_the_installed_package(client: TestClient) -> None:
    r = client.get(PLOTLY_URL)
    assert r.status_code == 200 and len(r.content) > 1_000_000
    assert "immutable" in r.headers["cache-control"]
    assert PLOTLY_URL in client.get("/power-law").text


def test_bad_input_is_a_422_naming_the_field(client: TestClient) -> None:
    r = client.get("/ui/figures/similarity?ids=1,x")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "ids"
    r = client.post("/ui/api/parse-spec", content=b"name: [x")
    assert r.status_code == 422 and "line 1" in r.json()["detail"][0]["message"]
    r = client.post("/ui/api/parse-spec", content=b"- a list")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "spec"
    assert client.get("/ui/figures/power-law?target=2").status_code == 422
    assert client.get("/runs/0").status_code == 422


def test_run_json_without_model_or_metrics(client: TestClient) -> None:
    assert client.get("/ui/api/runs/1/model-info").json() == {
        "available": False, "reason": "no stored model yet"
    }  # fmt: skip
    assert client.get("/ui/api/runs/99/model-info").status_code == 404
    assert client.get("/ui/figures/runs/1/curves").json()["points"] == 0
    page = client.get("/ui/api/runs?status=queued").json()
    assert [r["name"] for r in page["items"]] == ["queued-one"] and page["counts"] == {"queued": 1}
    assert page["items"][0]["has_model"] is False
    assert client.get("/ui/figures/sweeps/1/ablation").status_code == 404


def test_the_figure_takes_the_api_analysis_query(client: TestClient) -> None:
    """One query type for both: the checks the dashboard's copy once lost hold here too."""
    for query in ("tag=a%0Ab", "sweep=01", "target=1.5", "metric=train_acc"):
        api = client.get(f"/api/analysis/power-law?{query}")
        ui = client.get(f"/ui/figures/power-law?{query}")
        assert api.status_code == ui.status_code == 422, query
        assert api.json()["detail"][0]["field"] == ui.json()["detail"][0]["field"], query
    ok = client.get("/ui/figures/power-law?tag=demo&y=error")
    assert ok.status_code == 200 and ok.json()["points"] == 0


def test_ood_figures_without_results(client: TestClient) -> None:
    r = client.get("/ui/figures/ood")
    assert r.status_code == 200 and r.json()["points"] == 0 and r.json()["rows"] == []
    assert client.get("/ui/figures/runs/1/ood").json() == {"sets": 0}  # queued: no result
    assert client.get("/ui/figures/runs/999/ood").status_code == 404
    assert client.get("/ui/figures/power-law", params={"y": "gap"}).status_code == 200
    assert client.get("/ui/figures/power-law", params={"y": "loss"}).status_code == 422
    assert client.get("/ui/figures/ood?sweep=01").status_code == 422  # the API's filter checks


def test_the_navigation_links_the_api_docs(client: TestClient) -> None:
    for path in ("/", "/sweeps"):
        nav = client.get(path).text.split('<nav aria-label="Pages">')[1].split("</nav>")[0]
        assert '<a href="/docs">API docs</a>' in nav
    assert client.get("/docs").status_code == 200


def test_the_simple_form_defaults_to_the_readmes_first_model(client: TestClient) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    first = re.search(r'"arch": "([\w:-]+)"|arch: ([\w:-]+)', readme)
    assert first is not None
    html = client.get("/").text
    select = html.split('<select name="arch" data-field="model.arch"')[1].split("</select>")[0]
    assert re.findall(r'<option value="([^"]+)" selected>', select) == [first[1] or first[2]]
    assert select.count("<option") > 1  # a choice, with the README's model first picked


def test_an_arch_filter_starts_at_any(client: TestClient) -> None:
    """A filter that picked the form's default would hide every other architecture's runs."""
    for path in ("/", "/power-law", "/generalization"):
        select = client.get(path).text.split('<select name="arch">')[1].split("</select>")[0]
        assert select.startswith('<option value="">any</option>'), path
        assert " selected" not in select, path


@pytest.mark.parametrize("ids", ["١", "1,٢", "+1", "1_0", "01", "1.0", "²", "1,-2"])
def test_similarity_ids_are_plain_ascii_digits(client: TestClient, ids: str) -> None:
    """Issue 23: ``ids=١`` (an Arabic-Indic one) was read as run 1 by int()."""
    r = client.get("/ui/figures/similarity", params={"ids": ids})
    assert r.status_code == 422, (ids, r.text)
    [err] = r.json()["detail"]
    assert err["field"] == "ids" and "plain digits 0-9" in err["message"]
    ok = client.get("/ui/figures/similarity", params={"ids": "1, 1,2"})
    assert ok.status_code == 200 and ok.json()["missing"] == [1, 2]


@pytest.mark.parametrize("path", ["/api/analysis/power-law", "/ui/figures/power-law"])
@pytest.mark.parametrize("task", ["pose", "multitask"])
def test_the_gap_exists_only_for_classification(client: TestClient, path: str, task: str) -> None:
    """Issue 23: ``quantity=gap&task=pose`` answered a classification gap series."""
    r = client.get(path, params={"quantity": "gap", "task": task})
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["field"] == "quantity"
    assert err["message"].startswith("quantity=gap (train accuracy minus validation accuracy)")
    assert f"task {task!r} has no train accuracy" in err["message"]
    assert client.get(path, params={"quantity": "gap"}).status_code == 200
    assert client.get(path, params={"quantity": "gap", "task": "classification"}).status_code == 200
    assert client.get(path, params={"task": task}).status_code == 200
