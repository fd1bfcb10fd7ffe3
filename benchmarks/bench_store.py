"""Model downloads from the artifact store: an S3 store (moto's S3 API server, a real process on
127.0.0.1) against the local directory, side by side in one run.

One model file (``--size-mb`` of random bytes: the download path never parses it) is stored in
both backends and recorded for two experiments of one SQLite database; two API servers (uvicorn
processes, one per backend: ``RPG_ARTIFACT_URL`` unset / ``s3://...``) serve
``GET /api/experiments/{id}/model``. Each backend's download is streamed by an httpx client,
alternating between the backends, ``--repeats`` times after one verified warm-up (its sha256
checked against the record). Printed: throughput (median, min-max, MB/s), the ratio, and each
API process's peak resident memory (VmHWM, /proc) before and after the downloads: a streamed
download keeps it far below the file's size. The machine's load average before and after.

    python benchmarks/bench_store.py [--size-mb 100] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import crud  # noqa: E402
from api.db import make_engine, make_sessionmaker  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from api.settings import Settings  # noqa: E402
from api.storage import open_store  # noqa: E402
from tests.s3server import MotoServer, credentials_env, free_port  # noqa: E402

SPEC = {
    "name": "bench-store",
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 1000},
    "data": {"dataset": "synthetic", "image_size": 8, "num_classes": 4},
    "train": {"epochs": 1, "batch_size": 32},
}


def vm_kib(pid: int, field: str) -> int:
    """``VmHWM`` (peak resident set) or ``VmRSS`` of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _record(url: str, settings: Settings, payload: Path, digest: str) -> int:
    """A succeeded experiment whose model is ``payload``, stored in ``settings``' store."""
    sessions = make_sessionmaker(make_engine(url))
    with sessions() as s:
        exp_id = crud.create_experiment(s, SPEC)
        s.commit()
        rel = crud.artifact_relpath(exp_id)
        open_store(settings).put_file(rel, payload)
        lease = crud.claim_experiment(s, exp_id, worker="bench")
        assert lease is not None
        record = crud.FileRecord("model", rel, digest, payload.stat().st_size)
        assert crud.finish_experiment(s, exp_id, lease.token, {"val_acc": 0.5}, [record])
    return exp_id


class Api:
    """``uvicorn studio.app:app`` in its own process, configured by ``env``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "uvicorn", "studio.app:app", "--port", str(self.port)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--log-level", "warning"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.log = log

    def wait(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def download(client: httpx.Client, url: str, check: str | None = None) -> tuple[int, float]:
    """Stream ``url``; returns (bytes, seconds). ``check``: the sha256 the bytes must have."""
    h = hashlib.sha256() if check else None
    n = 0
    t0 = time.perf_counter()
    with client.stream("GET", url) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(1 << 20):
            n += len(chunk)
            if h is not None:
                h.update(chunk)
    seconds = time.perf_counter() - t0
    if h is not None and h.hexdigest() != check:
        raise AssertionError(f"{url}: the downloaded bytes do not match the record")
    return n, seconds


def run(size_mb: float, repeats: int, endpoint: str | None = None) -> dict[str, Any]:
    """The measurement; ``endpoint``: an S3 API server already running (else moto's is
    started here)."""
    load_before = os.getloadavg()
    out: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size_mb": size_mb,
        "repeats": repeats,
        "load_before": [round(x, 2) for x in load_before],
    }
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp_s:
        tmp = Path(tmp_s)
        os.environ.update(credentials_env())
        moto = MotoServer(tmp / "moto.log", url=endpoint)
        apis: dict[str, Api] = {}
        try:
            bucket = moto.make_bucket()
            url = f"sqlite:///{tmp / 'rpg.db'}"
            upgrade(url)
            payload = tmp / "model.rpg"
            size = int(size_mb * 1024 * 1024)
            with payload.open("wb") as fh:
                for _ in range(0, size, 1 << 20):
                    fh.write(os.urandom(min(1 << 20, size - fh.tell())))
            digest = hashlib.sha256(payload.read_bytes()).hexdigest()
            store_env = {
                "RPG_ARTIFACT_URL": f"s3://{bucket}/bench",
                "RPG_S3_ENDPOINT_URL": moto.url,
            }
            configs = {
                "local": Settings(database_url=url, artifact_dir=tmp / "local"),
                "s3": Settings(
                    database_url=url,
                    artifact_dir=tmp / "s3-scratch",
                    artifact_url=store_env["RPG_ARTIFACT_URL"],
                    s3_endpoint_url=moto.url,
                ),
            }
            ids = {name: _record(url, cfg, payload, digest) for name, cfg in configs.items()}
            base = {
                **{k: v for k, v in os.environ.items() if not k.startswith("RPG_")},
                **credentials_env(),
                "PYTHONPATH": str(ROOT),
                "RPG_DATABASE_URL": url,
                "RPG_BROKER_URL": "",
                "RPG_AUTO_MIGRATE": "false",
            }
            envs = {
                "local": {**base, "RPG_ARTIFACT_DIR": str(tmp / "local")},
                "s3": {**base, "RPG_ARTIFACT_DIR": str(tmp / "s3-api"), **store_env},
            }
            for name, env in envs.items():
                apis[name] = Api(env, tmp / f"api-{name}.log")
            for api in apis.values():
                api.wait()
            times: dict[str, list[float]] = {name: [] for name in apis}
            hwm_start: dict[str, int] = {}  # served a request, downloaded nothing
            hwm_before: dict[str, int] = {}  # after the warm-up download (boto3 imported)
            with httpx.Client(timeout=120) as client:
                for name, api in apis.items():  # warm-up: the first request, verified
                    client.get(f"{api.url}/api/experiments/{ids[name]}")
                    hwm_start[name] = vm_kib(api.proc.pid, "VmHWM")
                    n, _ = download(client, f"{api.url}/api/experiments/{ids[name]}/model", digest)
                    assert n == size, (name, n, size)
                    hwm_before[name] = vm_kib(api.proc.pid, "VmHWM")
                for i in range(repeats):
                    order = list(apis) if i % 2 == 0 else list(reversed(apis))
                    for name in order:
                        api = apis[name]
                        n, s = download(client, f"{api.url}/api/experiments/{ids[name]}/model")
                        assert n == size, (name, n, size)
                        times[name].append(s)
            for name, api in apis.items():
                mbps = [size / 1e6 / s for s in times[name]]
                out[name] = {
                    "mb_per_s_median": round(statistics.median(mbps), 1),
                    "mb_per_s_min": round(min(mbps), 1),
                    "mb_per_s_max": round(max(mbps), 1),
                    "vm_hwm_start_mib": round(hwm_start[name] / 1024, 1),
                    "vm_hwm_before_mib": round(hwm_before[name] / 1024, 1),
                    "vm_hwm_after_mib": round(vm_kib(api.proc.pid, "VmHWM") / 1024, 1),
                }
                out[name]["peak_growth_mib"] = round(
                    out[name]["vm_hwm_after_mib"] - out[name]["vm_hwm_before_mib"], 1
                )
            out["s3_over_local_throughput"] = round(
                out["s3"]["mb_per_s_median"] / out["local"]["mb_per_s_median"], 3
            )
        finally:
            for api in apis.values():
                api.stop()
            moto.stop()
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=100.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--s3-endpoint", help="an S3 API server already running (default: moto's)")
    args = ap.parse_args()
    out = run(args.size_mb, args.repeats, args.s3_endpoint)
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    lines = [
        f"{out['machine']}, {out['date']}; load before {out['load_before']}, "
        f"after {out['load_after']}",
        f"one {args.size_mb:g} MB model, {args.repeats} streamed downloads per backend",
        "VmHWM (MiB) of each API process: at start, after the warm-up download, at the end",
        f"{'backend':8} {'MB/s median':>12} {'min-max':>14} {'start':>8} {'warm':>8} "
        f"{'end':>8} {'growth':>8}",
    ]
    for name in ("local", "s3"):
        r = out[name]
        spread = f"{r['mb_per_s_min']}-{r['mb_per_s_max']}"
        lines.append(
            f"{name:8} {r['mb_per_s_median']:>12} {spread:>14} "
            f"{r['vm_hwm_start_mib']:>8} {r['vm_hwm_before_mib']:>8} "
            f"{r['vm_hwm_after_mib']:>8} {r['peak_growth_mib']:>8}"
        )
    lines.append(f"s3 / local throughput: {out['s3_over_local_throughput']}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
