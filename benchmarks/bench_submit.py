"""Two parts of ``POST /api/experiments`` before and after issue 27's cuts, in one process,
paired and interleaved (``paired.py``): ratios of CPU time, after / before.

* send: ``api.dispatch.dispatch`` of one message to Redis through the product's sender
  (``api.redis_sender``: one redis client per kombu channel) against kombu's own Redis
  transport (a new ``redis.Redis`` per message);
* insert: ``crud.create_experiment`` (prebuilt Core statements, the conditions from the parsed
  spec) against the ORM path (``_row_for``, add, flush; the conditions from the dump, parsed
  again, with the left-out paths' cache cleared), each one row + its tag and a commit on a
  throwaway PostgreSQL database.

    PYTHONPATH=$PWD python benchmarks/bench_submit.py [--pairs 10] [--batch 200]

Needs Redis on 127.0.0.1:6379 (database 9, emptied) and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import SPEC, postgres_db  # noqa: E402
from paired import load_text, pairs, ratio  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/9"


def _batch(fn: Callable[[int], object], n: int) -> Callable[[], None]:
    def run() -> None:
        for i in range(n):
            fn(i)

    return run


def send_parts(n: int) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """(before, after, cleanup): n sends with kombu's transport, then with the product's."""
    import redis

    from api import dispatch, redis_sender
    from api.settings import Settings

    settings = Settings(database_url="sqlite://", broker_url=REDIS_URL, dispatch_queue="bench")
    senders = {}
    for name, transport in (("before", "redis"), ("after", redis_sender.TRANSPORT)):
        dispatch._sender.cache_clear()
        redis_sender.TRANSPORT = transport
        senders[name] = dispatch.sender(settings.broker_url, settings.dispatch_queue)
    redis_sender.TRANSPORT = f"{redis_sender.__name__}:Transport"
    dispatch._sender.cache_clear()

    def send_with(app: object) -> Callable[[int], object]:
        def one(i: int) -> object:
            with app.producer_or_acquire() as producer:  # type: ignore[attr-defined]
                return app.send_task(  # type: ignore[attr-defined]
                    dispatch.TRAIN_TASK, args=[i], queue="bench", producer=producer, retry=False
                )

        return one

    r = redis.Redis.from_url(REDIS_URL)

    def cleanup() -> None:
        r.delete("bench")

    return _batch(send_with(senders["before"]), n), _batch(send_with(senders["after"]), n), cleanup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=200, help="calls per timed half")
    args = ap.parse_args()
    from api.crud import experiments as ce
    from api.db import make_engine, make_sessionmaker
    from api.migrate import upgrade
    from api.models import utcnow
    from rpg_core.spec import ExperimentSpec
    from rpg_core.spec import conditions as cnd

    print(
        f"bench_submit {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {platform.platform()}"
        f"; load average {load_text()}"
    )
    print(f"command: python benchmarks/bench_submit.py --pairs {args.pairs} --batch {args.batch}")
    before, after, cleanup = send_parts(args.batch)
    cleanup()
    a, b = pairs(before, after, args.pairs)
    cleanup()
    r = ratio([s.cpu for s in b], [s.cpu for s in a])
    per = [1000 * s.cpu / args.batch for s in a], [1000 * s.cpu / args.batch for s in b]
    print(
        f"send:   before {sorted(per[0])[len(per[0]) // 2]:.3f} ms cpu/send, after "
        f"{sorted(per[1])[len(per[1]) // 2]:.3f}; after/before cpu {r.text()}"
    )

    parsed = ExperimentSpec.model_validate({**SPEC, "tags": ["bench"]})
    spec = parsed.model_dump(mode="json")
    with postgres_db() as url:
        upgrade(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)

        def orm(_i: int) -> None:
            cnd._left_out_of.cache_clear()
            with sessions() as s:
                exp = ce._row_for(spec, None)
                exp.dispatched_at = utcnow()
                s.add(exp)
                s.flush()
                s.commit()

        def core(_i: int) -> None:
            with sessions() as s:
                ce.create_experiment(s, spec, dispatched=True, parsed=parsed)
                s.commit()

        a, b = pairs(_batch(orm, args.batch), _batch(core, args.batch), args.pairs)
        engine.dispose()
    r = ratio([s.cpu for s in b], [s.cpu for s in a])
    per = [1000 * s.cpu / args.batch for s in a], [1000 * s.cpu / args.batch for s in b]
    print(
        f"insert: before {sorted(per[0])[len(per[0]) // 2]:.3f} ms cpu/row, after "
        f"{sorted(per[1])[len(per[1]) // 2]:.3f}; after/before cpu {r.text()}"
    )
    print(f"load average at the end: {load_text()}")


if __name__ == "__main__":
    main()
