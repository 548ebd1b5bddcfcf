"""docker-compose.yaml and the Dockerfile, checked without a Docker engine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def _pinned(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith(f"{name}=="))


def test_services_and_their_commands(compose):
    services = compose["services"]
    assert set(services) == {
        "postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "spark-master", "spark-worker",
    }  # fmt: skip
    assert services["spark-worker"]["deploy"]["replicas"] == 2
    for name in ("apiserver", "scheduler", "dag-processor", "triggerer"):
        assert services[f"airflow-{name}"]["command"] == name.replace("apiserver", "api-server")
    assert services["spark-master"]["command"][0] == "org.apache.spark.deploy.master.Master"


def test_every_service_has_an_image_and_health_checks_where_depended_on(compose):
    services = compose["services"]
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep} without a check"
    long_running = [n for n in services if n != "airflow-init"]
    assert all("healthcheck" in services[n] for n in long_running)


def test_one_project_image_for_airflow_and_spark(compose):
    images = {svc.get("image") for n, svc in compose["services"].items() if n != "postgres"}
    assert images == {"imgclf:latest"}


def test_versions_match_the_pins():
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)$", dockerfile, re.M)
    assert base, "Dockerfile must build FROM the official apache/airflow image"
    assert base.group(1) == _pinned("apache-airflow")
    assert base.group(2) == "3.11"
    assert "openjdk-17" in dockerfile
    assert "-c constraints.txt" in dockerfile  # the same pins as the venv


def test_data_root_volume_and_env_agree(compose):
    for name, svc in compose["services"].items():
        if name == "postgres":
            continue
        assert "imgclf-data:/data" in svc["volumes"], name
        assert svc["environment"]["IMGCLF_HOME"] == "/data", name
    assert "IMGCLF_HOME=/data" in (ROOT / "Dockerfile").read_text().replace(" ", "")


def test_spark_connection_and_driver_host(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert '"host": "spark://spark-master:7077"' in env["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert "spark.driver.host" in env["IMGCLF_SPARK_CONF"]
    assert compose["services"]["airflow-scheduler"]["hostname"] == "airflow-scheduler"


def _env_items(compose):
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            yield name, key, str(value)


def test_no_inline_secrets(compose):
    secret_key = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN", re.I)
    url_password = re.compile(r"://[^:/@\s]+:(?P<pw>[^@\s]+)@")
    for service, key, value in _env_items(compose):
        if secret_key.search(key):
            assert value.startswith("${"), f"{service}.{key} is inline: {value!r}"
        for m in url_password.finditer(value):
            assert m.group("pw").startswith("${"), f"{service}.{key} has a password in a URL"
        if '"password"' in value:
            assert re.search(r'"password": "\$\{', value), f"{service}.{key}: inline password"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    example = (ROOT / ".env.example").read_text()
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "GITHUB_TOKEN"):
        assert f"{var}=" in example


def test_the_secret_check_catches_an_inline_password():
    bad = {"services": {"x": {"environment": {"DB": "postgresql://u:hunter2@db/x"}}}}
    with pytest.raises(AssertionError, match="password in a URL"):
        test_no_inline_secrets(bad)
