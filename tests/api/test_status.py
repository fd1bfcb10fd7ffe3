"""The job status has one owner (api.status): its names, groups and legal transitions."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from api.status import (
    ACTIVE,
    CANCELLABLE,
    FINISHED,
    LEASED,
    STATUSES,
    TRANSITIONS,
    IllegalTransition,
    JobStatus,
    check_transition,
    page_data,
)

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

ROOT = Path(__file__).resolve().parents[2]
NAMES = [s.value for s in JobStatus]


@pytest.mark.parametrize(("current", "new"), list(itertools.product(NAMES, NAMES)))
def test_check_transition_allows_exactly_the_edges_of_transitions(current: str, new: str) -> None:
    if JobStatus(new) in TRANSITIONS[JobStatus(current)]:
        assert check_transition(current, new) is JobStatus(new)
    else:
        with pytest.raises(IllegalTransition, match=f"a {current} run cannot become {new}"):
            check_transition(current, new)


def test_an_illegal_transition_names_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition, match=r"a failed run can become: queued"):
        check_transition("failed", "running")
    with pytest.raises(IllegalTransition, match="a paused run cannot become queued"):
        check_transition("paused", "queued")  # an unknown name is never legal


def test_the_groups_partition_the_statuses() -> None:
    assert set(STATUSES) == set(TRANSITIONS) and len(STATUSES) == len(set(STATUSES))
    assert ACTIVE | FINISHED == set(STATUSES) and not ACTIVE & FINISHED
    assert LEASED < ACTIVE and JobStatus.queued in ACTIVE
    assert all(not TRANSITIONS[s] - {JobStatus.queued} for s in FINISHED)  # only a retry leaves
    assert CANCELLABLE == {JobStatus.queued, JobStatus.running}
    data = page_data()
    assert data["statuses"] == NAMES
    assert set(data["active"]) == {"queued", "running", "cancelling"}
    assert set(data["finished"]) == {"cancelled", "succeeded", "failed", "pruned"}


# a literal list, tuple or set of at least three status names ("queued", "running", ...)
_NAME = "|".join(NAMES)
_LIST = re.compile(rf"""[\[({{]\s*(["'](?:{_NAME})["']\s*,\s*){{2,}}["'](?:{_NAME})["']""")
_OPTION = re.compile(rf"<option>(?:{_NAME})</option>")


def test_no_other_module_lists_the_status_names() -> None:
    owners = []
    for folder in ("api", "worker", "frontend", "studio", "rpg_core"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".js", ".html"} or "migrations" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            if _LIST.search(text) or _OPTION.search(text):
                owners.append(str(path.relative_to(ROOT)))
    assert owners == [], f"status names listed outside api/status.py: {owners}"
    assert _LIST.search('X = ("queued", "running", "failed")')  # the pattern finds a list


def test_the_owner_defines_each_name_once() -> None:
    text = (ROOT / "api" / "status.py").read_text(encoding="utf-8")
    for name in NAMES:
        assert len(re.findall(rf'^\s+{name} = "{name}"$', text, re.M)) == 1
