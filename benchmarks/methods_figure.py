"""The Fig. 1 (right) twin's figure: `rpg sweep` results loaded into a fresh SQLite database
through the lifecycle (as a worker would store them), served, and the power-law page (one
series per method, the budget table) screenshot in chromium.

Usage: python benchmarks/methods_figure.py OUT.png DIR [DIR...]
(DIR: `rpg sweep experiments/paper/fashion/fig1.yaml --out DIR`; docs/img/fig1-twin.png)
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from api import crud
from api.crud import lifecycle
from api.migrate import upgrade
from api.settings import Settings
from studio.app import create_app


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'rpg.db'}"
    upgrade(url)
    settings = Settings(
        database_url=url, broker_url=None, artifact_dir=tmp / "a", auto_migrate=False
    )
    app = create_app(settings)
    with app.state.sessionmaker() as s:
        for d in args.dirs:
            for f in sorted(d.glob("*.json")):
                run = json.loads(f.read_text())
                if f.name == "summary.json" or "result" not in run:
                    continue
                exp_id = crud.create_experiment(s, run["spec"])
                s.commit()
                lease = lifecycle.claim_experiment(s, exp_id, "import:1")
                assert lease is not None
                result = {k: v for k, v in run["result"].items() if k not in ("spec",)}
                assert lifecycle.finish_experiment(s, exp_id, lease.token, result)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/power-law")
        page.wait_for_selector("#pl-graph[data-ready='1']")
        page.wait_for_timeout(1000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        print(page.inner_text("#pl-state"))
        browser.close()
    server.should_exit = True
    thread.join(timeout=10)


if __name__ == "__main__":
    main()
