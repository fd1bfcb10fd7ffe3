"""The reconciler forgets the unacknowledged broker messages of settled jobs (real Redis and
PostgreSQL). Before, a killed worker's message stayed in Redis's ``unacked`` hash until the
visibility timeout (7 days), then came back as a stale copy."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from pathlib import Path

import redis
from sqlalchemy import update

from api import crud
from api.models import Experiment, utcnow
from api.settings import Settings
from worker.app import TRAIN_TASK
from worker.broker import UNACKED_INDEX_KEY, UNACKED_KEY, unacked_experiments
from worker.config import WorkerSettings
from worker.reconcile import reconcile
from worker.runner import sessions_for

from .conftest import REDIS_URL, tiny_spec


def _message(exp_id: int) -> dict[str, object]:
    """A message as kombu's Redis transport keeps it in the unacked hash."""
    body = base64.b64encode(json.dumps([[exp_id], {}, {}]).encode()).decode()
    return {"body": body, "headers": {"task": TRAIN_TASK, "id": str(uuid.uuid4())},
            "properties": {"body_encoding": "base64"}}  # fmt: skip


def test_unacked_messages_of_settled_jobs_are_dropped(pg_url: str, tmp_path: Path) -> None:
    queue = f"rpg-unacked-{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=pg_url, broker_url=REDIS_URL, dispatch_queue=queue,
                        artifact_dir=tmp_path, auto_migrate=False)  # fmt: skip
    with sessions_for(pg_url)() as s:
        ids = [crud.create_experiment(s, tiny_spec(f"u{i}")) for i in range(4)]
        s.commit()
        done, dead, live, waiting = ids
        for exp_id in (done, dead, live):
            lease = crud.claim_experiment(s, exp_id, "w", lease_s=600)
            assert lease is not None
        s.execute(update(Experiment).where(Experiment.id == done).values(status="succeeded"))
        s.execute(
            update(Experiment)
            .where(Experiment.id == dead)
            .values(lease_expires_at=utcnow() - timedelta(seconds=5))
        )
        s.commit()
    r = redis.Redis.from_url(REDIS_URL)
    tags = {exp_id: f"{queue}-{exp_id}".encode() for exp_id in (done, dead, live, waiting)}
    other = f"{queue}-other".encode()
    try:
        for exp_id, tag in tags.items():
            r.hset(UNACKED_KEY, tag, json.dumps([_message(exp_id), "", queue]))
            r.zadd(UNACKED_INDEX_KEY, {tag: 1.0})
        r.hset(UNACKED_KEY, other, json.dumps([_message(done), "", "another-queue"]))
        assert set(unacked_experiments(settings).values()) == {done, dead, live, waiting}
        wcfg = WorkerSettings(requeue_after_s=3600)
        with sessions_for(pg_url)() as s:
            report = reconcile(settings, wcfg, s)
        assert report.unacked_dropped == 2
        assert set(unacked_experiments(settings).values()) == {live, waiting}
        assert r.hexists(UNACKED_KEY, other)  # another queue's message is left alone
        assert r.zscore(UNACKED_INDEX_KEY, tags[done]) is None
    finally:
        r.hdel(UNACKED_KEY, *tags.values(), other)
        r.zrem(UNACKED_INDEX_KEY, *tags.values())
        r.delete(queue)
        r.close()
