"""A small typed client of the REST API (httpx), used by the ``rpg`` service commands."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx

from rpg_core.exceptions import RPGError

DEFAULT_URL = "http://127.0.0.1:8000"
SERVER_FILE = "server.json"  # written by `rpg serve` into its home folder


def server_url(url: str | None = None) -> tuple[str, str]:
    """The API URL to use and where it came from: ``url``, ``$RPG_API_URL``, the ``server.json``
    that ``rpg serve`` writes into the home folder (``$RPG_HOME``), or the default."""
    if url:
        return url, "--url"
    env = os.environ.get("RPG_API_URL", "").strip()
    if env:
        return env, "RPG_API_URL"
    from .settings import home_dir

    info = home_dir() / SERVER_FILE
    try:
        found = json.loads(info.read_text(encoding="utf-8")).get("url")
    except (OSError, ValueError, AttributeError):
        found = None
    if isinstance(found, str) and found.startswith(("http://", "https://")):
        return found, str(info)
    return DEFAULT_URL, "default; set RPG_API_URL"


class APIError(RPGError):
    """The server refused a request; the message carries its status and detail."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {_format_detail(detail)}")


class ServerNotRunning(APIError):
    """Nothing answers at the server's URL: no ``rpg serve`` (or ``make demo``) runs there."""

    def __init__(self, url: str, source: str | None = None) -> None:
        where = f" ({source})" if source else ""
        self.status_code, self.detail = 0, f"no server at {url}"
        RPGError.__init__(
            self,
            f"the RPG Studio server is not running at {url}{where}: start it with `rpg serve` "
            "(or `make demo`) in another shell, or point RPG_API_URL (or --url) at a running one",
        )


def _format_detail(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{d.get('field', '?')}: {d.get('message', d)}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    return str(detail)


class Client:
    """``Client(url, token)``; defaults: :func:`server_url` and ``$RPG_API_TOKEN``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        url_source: str | None = None,
    ) -> None:
        url, found_in = server_url(url)
        self.url_source = url_source or found_in  # where the URL came from (said in errors)
        token = token or os.environ.get("RPG_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ServerNotRunning(str(self._http.base_url).rstrip("/"), self.url_source) from None
        except httpx.HTTPError as err:
            raise APIError(0, f"cannot reach {self._http.base_url}: {err}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise APIError(r.status_code, detail)
        return None if r.status_code == 204 else r.json()

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._request("POST", "/api/experiments", json=spec)
        return out

    def submit_sweep(self, sweep: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._request("POST", "/api/sweeps", json=sweep)
        return out

    def experiment(self, experiment_id: int) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", f"/api/experiments/{int(experiment_id)}")
        return out

    def experiments(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        out: dict[str, Any] = self._request("GET", "/api/experiments", params=params)
        return out

    def cancel(self, experiment_id: int) -> dict[str, Any]:
        out: dict[str, Any] = self._request("POST", f"/api/experiments/{int(experiment_id)}/cancel")
        return out

    def sweeps(self, limit: int = 50) -> dict[str, Any]:
        """The newest sweeps with their counts by status (``{"items": [...], ...}``)."""
        out: dict[str, Any] = self._request("GET", "/api/sweeps", params={"limit": int(limit)})
        return out

    def metrics(self, experiment_id: int) -> dict[str, Any]:
        """An experiment's metric series: ``{"series": {name: {"epoch": [...], "value": [...]}}}``."""
        path = f"/api/experiments/{int(experiment_id)}/metrics"
        out: dict[str, Any] = self._request("GET", path)
        return out

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", f"/api/sweeps/{int(sweep_id)}")
        return out

    def download(self, experiment_id: int, dest: str | os.PathLike[str]) -> Path:
        """Stream the model to ``dest`` (written atomically) and check its sha256."""
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".part")
        h = hashlib.sha256()
        path = f"/api/experiments/{int(experiment_id)}/model"
        try:
            with self._http.stream("GET", path) as r:
                if r.status_code >= 400:
                    r.read()
                    try:
                        detail = r.json().get("detail", r.text)
                    except ValueError:
                        detail = r.text
                    raise APIError(r.status_code, detail)
                expected = r.headers.get("x-checksum-sha256")
                with tmp.open("wb") as fh:
                    for chunk in r.iter_bytes():
                        h.update(chunk)
                        fh.write(chunk)
        except httpx.ConnectError:
            tmp.unlink(missing_ok=True)
            raise ServerNotRunning(str(self._http.base_url).rstrip("/"), self.url_source) from None
        except httpx.HTTPError as err:
            tmp.unlink(missing_ok=True)
            raise APIError(0, f"download failed: {err}") from None
        if expected and h.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise APIError(0, "download corrupted: the sha256 does not match X-Checksum-SHA256")
        tmp.replace(dest)
        return dest
