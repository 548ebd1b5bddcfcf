"""docker-compose.yaml and the Dockerfile, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


AIRFLOW_SERVICES = (
    "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-triggerer", "airflow-worker",
)  # fmt: skip
POSTGRES_IMAGE_SERVICES = {"postgres", "mlflow-db-init"}  # the database and its one-shot client
OTHER_IMAGES = POSTGRES_IMAGE_SERVICES | {"redis"}  # not the project's image
ONE_SHOT = {"airflow-init", "mlflow-db-init"}


def _pinned(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith(f"{name}=="))


def test_services_and_their_commands(compose):
    services = compose["services"]
    assert set(services) == {
        "postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "spark-master",
        "spark-worker", "mlflow-db-init", "mlflow", "serve",
    }  # fmt: skip
    # scalable: `--scale airflow-worker=N`, `--scale spark-worker=N`
    assert services["spark-worker"]["deploy"]["replicas"] == 2
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    worker = services["airflow-worker"]["command"]
    assert worker == ["bash", "/opt/imgclf/deploy/airflow-worker.sh"]
    script = (ROOT / "deploy" / "airflow-worker.sh").read_text()
    assert script.rstrip().endswith('exec airflow celery worker "$@"')
    assert "container_name" not in services["airflow-worker"]  # (a fixed name cannot scale)
    assert "hostname" not in services["airflow-worker"]  # each replica is its own Spark driver
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
    long_running = [n for n in services if n not in ONE_SHOT]
    assert all("healthcheck" in services[n] for n in long_running)
    assert all(services[n]["restart"] == "no" for n in ONE_SHOT)


def test_one_project_image_for_airflow_and_spark(compose):
    services = compose["services"]
    images = {svc.get("image") for n, svc in services.items() if n not in OTHER_IMAGES}
    assert images == {"imgclf:latest"}  # MLflow too: the same pins (constraints.txt) as the tasks
    # the official images by default; .env names the stand-ins where no registry is reachable
    assert {services[n]["image"] for n in POSTGRES_IMAGE_SERVICES} == {
        "${POSTGRES_IMAGE:-postgres:15}"
    }
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7.2}"
    assert "ports" not in services["redis"] and "ports" not in services["postgres"]


def test_versions_match_the_pins():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{AIRFLOW_BASE_IMAGE\}$", dockerfile, re.M)
    base = re.search(r"^ARG AIRFLOW_BASE_IMAGE=apache/airflow:(\S+)-python(\S+)$", dockerfile, re.M)
    assert base, "Dockerfile must build FROM the official apache/airflow image by default"
    assert base.group(1) == _pinned("apache-airflow")
    assert base.group(2) == "3.11"
    assert "openjdk-17" in dockerfile
    assert "-c constraints.txt" in dockerfile  # the same pins as the venv


def test_data_root_volume_and_env_agree(compose):
    for name, svc in compose["services"].items():
        if name in OTHER_IMAGES:
            continue
        assert "imgclf-data:/data" in svc["volumes"], name
        assert svc["environment"]["IMGCLF_HOME"] == "/data", name
    assert "IMGCLF_HOME=/data" in (ROOT / "Dockerfile").read_text().replace(" ", "")


def test_spark_models_are_saved_through_the_shared_volume(compose):
    # the Celery workers run the drivers; mlflow.spark saves a model into MLFLOW_DFS_TMP from
    # the executors (other containers), so a container-local default logs a model without parts
    for name, svc in compose["services"].items():
        if name.startswith("airflow-"):
            assert svc["environment"]["MLFLOW_DFS_TMP"].startswith("/data/"), name


def test_spark_connection_driver_address_and_authentication(compose):
    services = compose["services"]
    env = services["airflow-worker"]["environment"]
    assert '"host": "spark://spark-master:7077"' in env["AIRFLOW_CONN_SPARK_DEFAULT"]
    conf = json.loads(env["IMGCLF_SPARK_CONF"])
    # drivers run in whichever worker replica took the task: each advertises its own address
    assert "spark.driver.host" not in conf and conf["spark.driver.bindAddress"] == "0.0.0.0"
    assert conf["spark.authenticate"] == "true"
    for name in ("airflow-worker", "spark-master", "spark-worker"):
        secret = services[name]["environment"]["_SPARK_AUTH_SECRET"]
        assert secret == "${SPARK_AUTH_SECRET:?set it in .env}", name
    assert (
        "-Dspark.authenticate=true" in services["spark-master"]["environment"]["SPARK_MASTER_OPTS"]
    )
    assert (
        "-Dspark.authenticate=true" in services["spark-worker"]["environment"]["SPARK_WORKER_OPTS"]
    )


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
    for var in (
        "POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "GITHUB_TOKEN",
        "MLFLOW_DB_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_API_SECRET_KEY",
        "MLFLOW_ADMIN_PASSWORD", "MLFLOW_PIPELINE_PASSWORD", "MLFLOW_SECRET_KEY",
        "SPARK_AUTH_SECRET",
    ):  # fmt: skip
        assert f"\n{var}=\n" in example, f"{var}: .env.example ships no value for it"


def test_the_secret_check_catches_an_inline_password():
    bad = {"services": {"x": {"environment": {"DB": "postgresql://u:hunter2@db/x"}}}}
    with pytest.raises(AssertionError, match="password in a URL"):
        test_no_inline_secrets(bad)


# --- MLflow ----------------------------------------------------------------------------------
def _option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def test_mlflow_server_has_its_own_database(compose):
    services = compose["services"]
    mlflow = services["mlflow"]
    # the pipeline's account first, then the server with MLflow's login (basic-auth app)
    assert mlflow["entrypoint"] == ["python", "/opt/imgclf/deploy/mlflow_server.py"]
    command = ["mlflow", *mlflow["command"]]
    assert command[:2] == ["mlflow", "server"]
    assert _option(command, "--app-name") == "basic-auth"
    store = _option(command, "--backend-store-uri")
    m = re.fullmatch(r"postgresql\+psycopg2://(?P<user>\w+)@postgres(:5432)?/(?P<db>\w+)", store)
    assert m, store  # no password in the URI: libpq reads PGPASSWORD
    airflow_db = services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert airflow_db.endswith("@postgres/airflow")
    assert m["db"] == "mlflow" != services["postgres"]["environment"]["POSTGRES_DB"]
    assert m["user"] == "mlflow" != services["postgres"]["environment"]["POSTGRES_USER"]
    assert mlflow["environment"]["PGPASSWORD"] == "${MLFLOW_DB_PASSWORD:?set it in .env}"
    # the role and database exist before the server starts, created idempotently
    assert mlflow["depends_on"] == {
        "mlflow-db-init": {"condition": "service_completed_successfully"}
    }
    init = services["mlflow-db-init"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert init["environment"]["PGHOST"] == "postgres"
    assert init["environment"]["MLFLOW_DB_PASSWORD"] == mlflow["environment"]["PGPASSWORD"]
    script = init["command"][-1]
    assert "ON_ERROR_STOP=1" in script
    assert re.search(r"CREATE ROLE mlflow .*WHERE NOT EXISTS.*\\gexec", script)
    assert re.search(r"CREATE DATABASE mlflow OWNER mlflow.*WHERE NOT EXISTS.*\\gexec", script)
    assert "PASSWORD :'pw'" in script  # psql quotes the password, never the shell
    assert "$${MLFLOW_DB_PASSWORD}" in script  # expanded in the container, not by compose


def test_mlflow_serves_artifacts_on_the_shared_volume_and_answers_health(compose):
    mlflow = compose["services"]["mlflow"]
    command = mlflow["command"]
    assert "--serve-artifacts" in command
    assert _option(command, "--artifacts-destination") == "/data/mlartifacts"
    assert "imgclf-data:/data" in mlflow["volumes"]
    assert (_option(command, "--host"), _option(command, "--port")) == ("0.0.0.0", "5000")
    assert mlflow["ports"] == ["${UI_HOST_IP:-127.0.0.1}:${MLFLOW_PORT:-5000}:5000"]
    assert mlflow["hostname"] == "mlflow"
    test = mlflow["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://localhost:5000/health" in test
    assert "curl" in (ROOT / "Dockerfile").read_text()  # the image has it
    # other containers reach it as mlflow:5000: MLflow's Host-header guard must accept that
    allowed = mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"]
    assert "mlflow:5000" in allowed and "*" not in allowed
    assert "localhost:${MLFLOW_PORT:-5000}" in allowed  # the published port, whichever it is


def test_airflow_and_spark_workers_track_to_the_mlflow_server(compose):
    services = compose["services"]
    for name in (*AIRFLOW_SERVICES, "spark-worker"):
        env = services[name]["environment"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["IMGCLF_MLFLOW_UI_URL"] == "${MLFLOW_UI_URL:-http://localhost:5000}", name
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/imgclf/plugins", name
        # the pipeline's own account, its password from .env
        assert env["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_PIPELINE_USER:-imgclf}", name
        assert env["MLFLOW_TRACKING_PASSWORD"] == "${MLFLOW_PIPELINE_PASSWORD:?set it in .env}"
    # tasks run in the Celery workers: they wait for a healthy server
    assert services["airflow-worker"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    example = (ROOT / ".env.example").read_text()
    for var in ("UI_HOST_IP", "MLFLOW_UI_URL", "MLFLOW_ALLOWED_HOSTS"):
        assert f"{var}=" in example


def test_only_the_uis_are_published_on_loopback_by_default(compose):
    published = {n: svc["ports"] for n, svc in compose["services"].items() if "ports" in svc}
    assert published == {
        "airflow-apiserver": ["${UI_HOST_IP:-127.0.0.1}:${AIRFLOW_PORT:-8080}:8080"],
        "mlflow": ["${UI_HOST_IP:-127.0.0.1}:${MLFLOW_PORT:-5000}:5000"],
        "spark-master": ["${UI_HOST_IP:-127.0.0.1}:${SPARK_UI_PORT:-8081}:8081"],
        "serve": ["127.0.0.1:${SERVE_PORT:-8000}:8000"],
    }


def test_celery_executor_with_the_redis_broker(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0", name
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "apache-airflow-providers-celery" in (ROOT / "pyproject.toml").read_text()


def test_the_serving_service_follows_the_champion_on_the_mlflow_server(compose):
    serve = compose["services"]["serve"]
    assert serve["image"] == "imgclf:latest" and serve["user"] == "airflow"  # not root
    assert serve["entrypoint"] == ["python", "-m", "imgclf.serving"]
    assert serve["command"][:2] == ["--host", "0.0.0.0"]  # reachable through the published port
    env = serve["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # the pipeline's account from .env: a missing password stops compose, never a blank login
    assert env["MLFLOW_TRACKING_PASSWORD"] == "${MLFLOW_PIPELINE_PASSWORD:?set it in .env}"
    assert env["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_PIPELINE_USER:-imgclf}"
    # healthy when it answers, champion or not (/health is 503 before the first promotion)
    assert serve["healthcheck"]["test"][-1] == "http://localhost:8000/"
    assert serve["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    assert not any(k.startswith(("AIRFLOW", "_SPARK")) for k in env)  # no Spark, no Airflow secrets


def test_every_project_setting_the_stack_sets_is_one_the_code_reads(compose):
    """The stack configures the pipeline through the same variables as ``make run`` (read by
    ``imgclf.settings`` and the modules beside it): one the code no longer reads (renamed,
    removed) would be ignored in containers without a word, so it fails here."""
    read = set()
    for folder in ("include", "spark_tasks", "dags"):
        for path in (ROOT / folder).rglob("*.py"):
            read.update(re.findall(r"\"(IMGCLF_[A-Z0-9_]+)\"", path.read_text()))
    dockerfile = re.findall(r"\b(IMGCLF_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text())
    stack = {k for _, k, _ in _env_items(compose) if k.startswith("IMGCLF_")} | set(dockerfile)
    assert {"IMGCLF_HOME", "IMGCLF_SPARK_CONF", "IMGCLF_SPARK_TASKS"} <= stack  # it saw them
    assert stack - read == set()
