"""docker-compose.yml is valid for a real compose parser and has what production needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = "/usr/bin/docker-compose"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPOSE, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60
    )


def test_compose_file_validates_and_a_broken_one_does_not(tmp_path: Path) -> None:
    assert validate(ROOT / "docker-compose.yml").returncode == 0
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    doc["services"]["redis"]["healthcheck"]["intervall"] = "1s"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(doc))
    assert validate(broken).returncode != 0


def test_compose_has_the_services_persistence_gpu_and_health_checks() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"api", "worker", "redis", "postgres", "flower"} <= set(services)
    assert all("healthcheck" in s for s in services.values())
    assert "--appendonly" in services["redis"]["command"]
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any("postgresql" in v for v in services["postgres"]["volumes"])
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert (ROOT / "Dockerfile").is_file()
