"""Which experiments does the broker still hold? (So the reconciler does not send them twice.)

Reads the pending messages of the dispatch queue without consuming them: the Redis list named
after the queue, or the message files of the filesystem broker. Messages a worker has taken but
not yet acknowledged are not counted: if that worker died, its job must be sent again.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

from api.dispatch import FILESYSTEM_SCHEME, TRAIN_TASK, transport_options
from api.settings import Settings

log = logging.getLogger(__name__)
MAX_SCAN = 100_000


def experiment_of(raw: bytes | str) -> int | None:
    """The experiment id of one serialized ``rpg.train_experiment`` message (None otherwise)."""
    try:
        msg = json.loads(raw)
        if msg.get("headers", {}).get("task") != TRAIN_TASK:
            return None
        body: Any = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    value = args[0] if isinstance(args, list) and args else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _redis_pending(url: str, queue: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        items: list[bytes] = client.lrange(queue, 0, MAX_SCAN - 1)  # type: ignore[assignment]
        return items
    finally:
        client.close()


def _filesystem_pending(url: str, queue: str) -> list[bytes]:
    folder = Path(transport_options(url)["data_folder_in"])
    out: list[bytes] = []
    for path in sorted(folder.glob(f"*.{queue}.msg"))[:MAX_SCAN]:
        try:
            out.append(path.read_bytes())
        except OSError:  # taken by a worker meanwhile
            continue
    return out


def held_experiments(settings: Settings) -> set[int] | None:
    """Ids with a pending message in the dispatch queue; None when the broker cannot be read."""
    url, queue = settings.broker_url, settings.dispatch_queue
    if not url:
        return None
    try:
        if url.startswith(("redis://", "rediss://")):
            raw = _redis_pending(url, queue)
        elif url.startswith(FILESYSTEM_SCHEME):
            raw = _filesystem_pending(url, queue)
        else:
            return None
    except Exception as err:  # noqa: BLE001 - unknown: the caller falls back on ages
        log.warning("cannot list the %s queue: %s", queue, err)
        return None
    return {i for i in map(experiment_of, raw) if i is not None}


def drop_filesystem_pending(settings: Settings) -> list[int]:
    """Embedded mode only (the filesystem broker, which no other server shares), before its
    worker starts: delete the pending messages of the dispatch queue, so the caller can send
    them again in the order it chooses. Returns the experiment ids they held (in queue order);
    [] for other brokers."""
    url, queue = settings.broker_url, settings.dispatch_queue
    if not url or not url.startswith(FILESYSTEM_SCHEME):
        return []
    folder = Path(transport_options(url)["data_folder_in"])
    ids: list[int] = []
    for path in sorted(folder.glob(f"*.{queue}.msg")):
        try:
            exp_id = experiment_of(path.read_bytes())
            if exp_id is None:  # not a train task: left alone
                continue
            path.unlink()
        except OSError:
            continue
        ids.append(exp_id)
    return ids


UNACKED_KEY = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, queue]
UNACKED_INDEX_KEY = "unacked_index"


def unacked_experiments(settings: Settings) -> dict[bytes, int]:
    """Redis only: the messages of the dispatch queue taken by a worker and not acknowledged
    yet, as {delivery tag: experiment id} ({} for other brokers or when Redis cannot be read)."""
    url, queue = settings.broker_url, settings.dispatch_queue
    if not url or not url.startswith(("redis://", "rediss://")):
        return {}
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    out: dict[bytes, int] = {}
    try:
        entries: dict[bytes, bytes] = client.hgetall(UNACKED_KEY)  # type: ignore[assignment]
    except Exception as err:  # noqa: BLE001 - a later pass tries again
        log.warning("cannot read the unacked messages: %s", err)
        return {}
    finally:
        client.close()
    for tag, value in entries.items():
        try:
            message, _exchange, routing_key = json.loads(value)
        except (ValueError, TypeError):
            continue
        if routing_key != queue:
            continue
        exp_id = experiment_of(json.dumps(message))
        if exp_id is not None:
            out[tag] = exp_id
    return out


def drop_unacked(settings: Settings, tags: list[bytes]) -> int:
    """Forget unacknowledged messages whose job the database already settled (finished, or
    its worker died and the reconciler sent it again): without this Redis keeps them until the
    visibility timeout (days) and then delivers a stale copy."""
    if not tags or not settings.broker_url:
        return 0
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        with client.pipeline() as pipe:
            pipe.hdel(UNACKED_KEY, *tags)
            pipe.zrem(UNACKED_INDEX_KEY, *tags)
            removed, _ = pipe.execute()
        return int(removed)
    finally:
        client.close()
