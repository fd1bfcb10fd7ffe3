"""The experiment listing's cursors, as properties on SQLite and PostgreSQL (issue 23, item 3).

Every valid query answers 2xx: walking every page of every sort and filter (the API's
``/api/experiments`` and the dashboard's ``/ui/api/runs``) returns each row exactly once, in the
order of the one-page listing. Every forged or altered cursor answers 422 naming ``cursor``,
never 5xx, including cursors signed with the right key (a leaked key) whose values are out of
range: an id of 2**70, a NUL in a name, a timestamp without a zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.crud import CursorError
from api.crud.listing import (
    MAX_ROW_ID,
    _b64,
    _signature,
    decode_cursor,
    encode_cursor,
)
from api.models import Experiment

from .conftest import run_to_end, submit

SORTS = [
    "id", "-id", "created", "-created", "name", "-name",
    "best_val_acc", "-best_val_acc", "updated", "-updated",
]  # fmt: skip
ENDPOINTS = ["/api/experiments", "/ui/api/runs"]
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["queued", "succeeded", "failed", "running"]),
        "arch": st.sampled_from(["resnet18", "resnet34", "vgg11"]),
        "dataset": st.sampled_from(["digits", "synthetic"]),
        "tag": st.sampled_from(["t1", "x", "y", "none"]),
        "scope": st.sampled_from(["plain", "global"]),
        "task": st.sampled_from(["classification", "pose"]),
    },
)


def _seed(client: TestClient, auth: dict[str, str], session: Session) -> list[int]:
    """16 runs with ties on every sort key: names, accuracies and update times repeat."""
    names = ["a", "B", "a-b", "a_b", "z", "a"]
    ids = []
    for i in range(16):
        over: dict[str, Any] = {"name": names[i % len(names)], "tags": [["x"], ["y"], []][i % 3]}
        if i % 4 == 1:
            over["model"] = {"arch": "resnet34"}
        if i % 5 == 2:
            over |= {"rpg": None, "data": {"dataset": "synthetic"}}
        ids.append(submit(client, auth, **over))
    for i, exp_id in enumerate(ids[:10]):
        if i % 3 == 2:
            run_to_end(session, exp_id, fail="boom")
        else:
            run_to_end(session, exp_id, {"best_val_acc": [0.1, 0.5, 0.5, 0.25][i % 4]})
    same = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    for k, exp_id in enumerate(ids):
        at = same if k % 3 == 0 else same + timedelta(microseconds=k)
        session.execute(update(Experiment).where(Experiment.id == exp_id).values(updated_at=at))
    session.commit()
    return ids


def _walk(client: TestClient, endpoint: str, params: dict[str, Any], limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    for _ in range(100):
        page_params = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get(endpoint, params=page_params)
        assert r.status_code == 200, (page_params, r.text)
        page = r.json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the listing never ended")


def test_every_page_of_every_sort_and_filter_once(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    ids = _seed(client, auth, session)
    everything = client.get("/api/experiments", params={"limit": 200}).json()["items"]
    assert sorted(e["id"] for e in everything) == sorted(ids)

    @PROPERTY
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        sort=st.sampled_from(SORTS),
        filters=FILTERS,
        limit=st.integers(1, 7),
    )
    def walk(endpoint: str, sort: str, filters: dict[str, str], limit: int) -> None:
        params = {**filters, "sort": sort}
        one_page = client.get(endpoint, params={**params, "limit": 200})
        assert one_page.status_code == 200, one_page.text
        expected = [e["id"] for e in one_page.json()["items"]]
        seen = _walk(client, endpoint, params, limit)
        assert seen == expected  # each row exactly once, in the one-page order
        assert len(set(seen)) == len(seen)

    walk()
    # every sort walks every row (the reproduction: -updated failed on page 2 with a 500)
    for sort in SORTS:
        assert sorted(_walk(client, "/api/experiments", {"sort": sort}, 2)) == sorted(ids), sort


def _signed(data: Any, key: bytes) -> str:
    """A cursor signed with ``key`` (the server's: as if its key had leaked)."""
    payload = json.dumps(data, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signature(key, payload))}"


def _refused(r: Any) -> None:
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "cursor", r.text


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=140),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


def _in_range(sort: str, value: Any, last_id: Any) -> bool:
    """Whether the server must accept (value, last_id) as a position in ``sort`` order."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_ROW_ID

    if not whole(last_id):
        return False
    key = sort.lstrip("-")
    if key in ("id", "created"):
        return whole(value)
    if key == "name":
        return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()
    if key == "best_val_acc":
        number = value if not isinstance(value, bool) else None
        return isinstance(number, int | float) and abs(number) <= 1e300
    return False  # updated: tested with timestamps below


def test_forged_cursors_are_422_never_500(
    app_and_client: tuple[Any, TestClient], auth: dict[str, str], session: Session
) -> None:
    app, client = app_and_client
    key: bytes = app.state.settings.cursor_key()
    _seed(client, auth, session)
    real = {
        (endpoint, sort): client.get(endpoint, params={"sort": sort, "limit": 3}).json()[
            "next_cursor"
        ]
        for endpoint in ENDPOINTS
        for sort in SORTS
    }
    assert all(real.values())

    # the reproductions, signed with the right key: out of range, still 422
    for endpoint in ENDPOINTS:
        for sort, value in [("id", 2**70), ("-id", -1), ("name", "a\x00b"), ("-name", "\ud800")]:
            _refused(client.get(endpoint, params={"sort": sort, "cursor": _signed({"s": sort, "v": value, "i": 1}, key)}))  # fmt: skip
        _refused(client.get(endpoint, params={"sort": "id", "cursor": _signed({"s": "id", "v": 1, "i": 2**70}, key)}))  # fmt: skip
        # a real cursor of another sort, and one signed with another key
        _refused(client.get(endpoint, params={"sort": "-id", "cursor": real[(endpoint, "name")]}))
        forged = _signed({"s": "-id", "v": 5, "i": 5}, key=b"guessed")
        _refused(client.get(endpoint, params={"sort": "-id", "cursor": forged}))

    @PROPERTY
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        sort=st.sampled_from(SORTS),
        text=st.text(max_size=600),
    )
    def arbitrary_text(endpoint: str, sort: str, text: str) -> None:
        r = client.get(endpoint, params={"sort": sort, "cursor": text})
        if text:
            _refused(r)
        else:
            assert r.status_code == 200, r.text

    @PROPERTY
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        sort=st.sampled_from(SORTS),
        position=st.integers(0, 10_000),
        char=st.sampled_from("AQgw-_.=+/0z%"),
    )
    def altered(endpoint: str, sort: str, position: int, char: str) -> None:
        cursor = real[(endpoint, sort)]
        at = position % len(cursor)
        changed = cursor[:at] + char + cursor[at + 1 :]
        r = client.get(endpoint, params={"sort": sort, "cursor": changed})
        if changed == cursor:
            assert r.status_code == 200, r.text
        else:
            _refused(r)

    @PROPERTY
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        sort=st.sampled_from([s for s in SORTS if "updated" not in s]),
        value=JSON_VALUES,
        last_id=st.one_of(st.integers(), JSON_VALUES),
    )
    def signed_values(endpoint: str, sort: str, value: Any, last_id: Any) -> None:
        r = client.get(
            endpoint,
            params={"sort": sort, "cursor": _signed({"s": sort, "v": value, "i": last_id}, key)},
        )
        if _in_range(sort, value, last_id):
            assert r.status_code == 200, (value, last_id, r.text)
        else:
            _refused(r)

    @PROPERTY
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        sort=st.sampled_from(["updated", "-updated"]),
        at=st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
        )
        | st.datetimes(),
        last_id=st.integers(0, MAX_ROW_ID),
    )
    def timestamps(endpoint: str, sort: str, at: datetime, last_id: int) -> None:
        cursor = _signed({"s": sort, "v": at.isoformat(), "i": last_id}, key)
        r = client.get(endpoint, params={"sort": sort, "cursor": cursor})
        if at.tzinfo is None:
            _refused(r)  # the server issues zoned timestamps only
        else:
            assert r.status_code == 200, (at, r.text)

    arbitrary_text()
    altered()
    signed_values()
    timestamps()


def test_the_cursor_key_is_the_secret_or_one_per_database() -> None:
    """RPG_CURSOR_SECRET signs the cursors; unset, every process of one database shares a key
    derived from its URL (several uvicorn workers behind one address read each other's)."""
    from api.settings import Settings

    key = Settings(cursor_secret="s3cret").cursor_key()
    assert key == b"s3cret"
    one, two = (Settings(database_url="sqlite:///a.db").cursor_key() for _ in range(2))
    assert one == two != Settings(database_url="sqlite:///b.db").cursor_key()
    cursor = encode_cursor("-id", 7, 7, key)
    assert decode_cursor(cursor, "-id", key) == (7, 7)
    for other in (b"other", one):
        with pytest.raises(CursorError, match="signature"):
            decode_cursor(cursor, "-id", other)
