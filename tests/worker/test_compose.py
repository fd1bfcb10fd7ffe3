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
    assert {"api", "worker", "redis", "postgres", "flower", "minio"} <= set(services)
    # every service that stays up has a health check (the bucket's one-shot exits)
    assert all("healthcheck" in s for s in services.values() if s.get("restart") != "no")
    assert "--appendonly" in services["redis"]["command"]
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any("postgresql" in v for v in services["postgres"]["volumes"])
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert (ROOT / "Dockerfile").is_file()


def test_compose_keeps_artifacts_in_the_s3_store() -> None:
    """The workers and the API use the MinIO service as their artifact store (RPG_ARTIFACT_URL
    s3://, its endpoint, credentials from the environment), once its bucket exists."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert any(v.endswith(":/data") for v in services["minio"]["volumes"])
    assert "mb" in " ".join(services["minio-bucket"]["command"])
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["RPG_ARTIFACT_URL"].startswith("s3://rpg-artifacts/")
        assert env["RPG_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
        needs = services[name]["depends_on"]["minio-bucket"]["condition"]
        assert needs == "service_completed_successfully"
    resolved = subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "RPG_S3_SECRET_KEY": "from-the-environment"},
    )
    assert resolved.returncode == 0, resolved.stderr
    config = yaml.safe_load(resolved.stdout)["services"]
    assert config["worker"]["environment"]["AWS_SECRET_ACCESS_KEY"] == "from-the-environment"
    assert config["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == "from-the-environment"
