"""A real S3 API server for the tests: moto's standalone server (``python -m moto.server``) as
its own process on 127.0.0.1, and the environment a store needs to reach it.

Not moto's in-process mock: every request crosses a socket to another process, so an outage is
a real one (the process stopped) and the client is boto3 as a deployment runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

# what the test store's clients sign with (moto accepts any); messages must never show them
ACCESS_KEY = "AKIARPGTESTKEY000001"
SECRET_KEY = "rpg-test-secret-Q7vX2mZt9LpW4nR8"
BUCKET = "rpg-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def credentials_env() -> dict[str, str]:
    """boto3's own variables (the store reads nothing else)."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


class MotoServer:
    """``python -m moto.server`` on a free port of 127.0.0.1, started and waited for."""

    def __init__(self, log: Path, port: int | None = None, url: str | None = None) -> None:
        """``url``: a server already running there (nothing is started or stopped)."""
        self.port = port or free_port()
        self.url = url or f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None
        if url is None:
            self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **credentials_env()},
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/moto-api/", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Kill the server (an outage: every request after this is refused)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def make_bucket(self, name: str | None = None) -> str:
        """A new bucket (each test its own prefix or bucket); returns its name."""
        import boto3

        name = name or f"rpg-{uuid.uuid4().hex[:12]}"
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.url,
                region_name="us-east-1",
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
        self._client.create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "runs") -> dict[str, str]:
        """What a process needs to use ``s3://bucket/prefix`` here."""
        return {
            **credentials_env(),
            "RPG_ARTIFACT_URL": f"s3://{bucket}/{prefix}",
            "RPG_S3_ENDPOINT_URL": self.url,
            "RPG_S3_CONNECT_TIMEOUT_S": "2",
            "RPG_S3_MAX_ATTEMPTS": "2",
        }
