"""plugins/imgclf_links.py: loaded by Airflow's own plugins manager, links computed the way the
api-server computes them (serialized operator + task instance from the metadata DB + a real
XCom), and the report app behind Airflow's auth."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from imgclf.settings import Settings, safe_name

ROOT = Path(__file__).resolve().parents[2]
PROBE_DAG_ID = "imgclf_links_probe"  # never the real DAG's id: the session DB is shared
RUN_ID = "manual__2025-01-01T00:00:00+00:00"
MLFLOW_URL = "http://localhost:5000/#/experiments/1/runs/0123456789abcdef"
PROBE_DAG = f"""
import pendulum
from airflow.sdk import dag, task


@dag(dag_id={PROBE_DAG_ID!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1))
def probe():
    @task
    def train():
        return {{"mlflow_run_url": "http://localhost:5000/#/elsewhere"}}

    @task
    def record():
        return {{}}

    train() >> record().as_teardown()


probe()
"""


@pytest.fixture
def plugin(monkeypatch):
    """The plugin as the api-server gets it: ``[core] plugins_folder`` -> plugins manager."""
    from airflow import plugins_manager, settings

    def clear_caches():
        for obj in vars(plugins_manager).values():
            if callable(getattr(obj, "cache_clear", None)):
                obj.cache_clear()

    monkeypatch.setattr(settings, "PLUGINS_FOLDER", str(ROOT / "plugins"))
    clear_caches()
    plugins, errors = plugins_manager._get_plugins()
    assert errors == {}
    found = [p for p in plugins if p.name == "imgclf_links"]
    assert len(found) == 1
    yield found[0], sys.modules["imgclf_links"]
    clear_caches()  # monkeypatch restores the folder next: the next caller reloads from it


def test_the_plugin_registers_two_global_links_and_the_report_app(plugin):
    from airflow import plugins_manager

    _, module = plugin
    names = sorted(link.name for link in plugins_manager.get_global_operator_extra_links())
    assert names == ["MLflow run", "Predictions report", "Run report"]
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [a["url_prefix"] for a in apps] == ["/imgclf"]
    assert isinstance(apps[0]["app"], module.LazyReportApp)
    assert (module.DAG_ID, module.TASK_ID) == ("football_classifier", "record")
    assert (module.PREDICT_DAG_ID, module.PREDICT_TASK_ID) == (
        "football_classifier_predict", "predict",
    )  # fmt: skip


def test_the_links_target_a_task_of_the_real_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "football_classifier.py"))
    assert bag.import_errors == {}
    record = bag.dags["football_classifier"].get_task("record")
    assert record.is_teardown  # runs whatever happened: the links exist for failed runs too


def test_mlflow_url_only_on_the_configured_mlflow_ui(plugin):
    _, module = plugin
    ui = "http://localhost:5000"
    assert module.mlflow_run_url({"mlflow_run_url": MLFLOW_URL}, ui) == MLFLOW_URL
    for bad in (
        None,
        {},
        {"mlflow_run_url": ""},
        {"mlflow_run_url": 42},
        {"mlflow_run_url": "javascript:alert(1)"},
        {"mlflow_run_url": "https://evil.example/#/experiments/1/runs/x"},
        {"mlflow_run_url": "http://localhost:5001/#/experiments/1/runs/x"},
    ):
        assert module.mlflow_run_url(bad, ui) == "", bad


def test_report_path_is_same_origin_and_quoted(plugin):
    _, module = plugin
    assert module.report_path("football_classifier", RUN_ID) == (
        "/imgclf/report/football_classifier/manual__2025-01-01T00%3A00%3A00%2B00%3A00"
    )


# --- the links as the api-server computes them, from a real XCom ---------------------------
@pytest.fixture(scope="module")
def probe_run(airflow_db, tmp_path_factory):
    """A serialized probe DAG (record + train) and one run of it in the metadata DB."""
    from airflow._shared.timezones import timezone
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    folder = tmp_path_factory.mktemp("probe-dags")
    (folder / "probe.py").write_text(PROBE_DAG)
    with create_session() as session:
        session.merge(DagBundleModel(name="imgclf-links-test"))
    bag = BundleDagBag(
        dag_folder=str(folder), bundle_path=str(folder), bundle_name="imgclf-links-test"
    )
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "imgclf-links-test", None)
    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == PROBE_DAG_ID).delete()
    SerializedDagModel.get_dag(PROBE_DAG_ID).create_dagrun(
        run_id=RUN_ID,
        logical_date=None,
        data_interval=None,
        run_after=timezone.utcnow(),
        run_type=DagRunType.MANUAL,
        triggered_by=DagRunTriggeredByType.TEST,
        state=DagRunState.RUNNING,
    )
    return RUN_ID


def _set_return_value(task_id: str, value) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if value is None:
            XComModel.clear(dag_id=PROBE_DAG_ID, task_id=task_id, run_id=RUN_ID, session=session)
        else:  # serialize=False: stored as the task runner stores it (a JSON object)
            XComModel.set(
                "return_value", value, dag_id=PROBE_DAG_ID, task_id=task_id, run_id=RUN_ID,
                serialize=False, session=session,
            )  # fmt: skip


def _links(task_id: str) -> dict[str, str | None]:
    """What ``GET .../taskInstances/{task_id}/links`` answers (routes/public/extra_links.py)."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    task = SerializedDagModel.get_dag(PROBE_DAG_ID).get_task(task_id)
    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=PROBE_DAG_ID, run_id=RUN_ID, task_id=task_id, map_index=-1)
            .one()
        )
        return {name: task.get_extra_links(ti, name) or None for name in task.extra_links}


@pytest.fixture
def probe_plugin(plugin, probe_run, monkeypatch):
    _, module = plugin
    monkeypatch.setattr(module, "DAG_ID", PROBE_DAG_ID)
    yield module
    _set_return_value("record", None)
    _set_return_value("train", None)


def test_links_from_the_record_tasks_return_value(probe_plugin):
    report = str(Settings.from_env().run_dir(RUN_ID) / "report.html")
    _set_return_value("record", {"report": report, "mlflow_run_url": MLFLOW_URL, "history": "x"})
    _set_return_value("train", {"mlflow_run_url": "http://localhost:5000/#/elsewhere"})
    assert _links("record") == {
        "MLflow run": MLFLOW_URL,
        "Run report": "/imgclf/report/imgclf_links_probe/manual__2025-01-01T00%3A00%3A00%2B00%3A00",
        "Predictions report": None,
    }
    # every task lists the global links; only record gets URLs (the UI hides null ones)
    assert _links("train") == {"MLflow run": None, "Run report": None, "Predictions report": None}


def test_no_links_before_record_ran_or_without_a_report(probe_plugin):
    none = {"MLflow run": None, "Run report": None, "Predictions report": None}
    assert _links("record") == none
    _set_return_value("record", {"history": "/data/runs/history.jsonl"})  # failed before metrics
    assert _links("record") == none


def test_a_double_encoded_value_still_works(probe_plugin):
    """A value set with serialize=True (REST API, XComModel.set default) is a JSON string."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        XComModel.set(
            "return_value", {"mlflow_run_url": MLFLOW_URL}, dag_id=PROBE_DAG_ID,
            task_id="record", run_id=RUN_ID, session=session,
        )  # fmt: skip
    assert _links("record")["MLflow run"] == MLFLOW_URL


def test_the_predictions_link_once_the_report_is_written(plugin, probe_run, monkeypatch):
    _, module = plugin
    monkeypatch.setattr(module, "PREDICT_DAG_ID", PROBE_DAG_ID)
    monkeypatch.setattr(module, "PREDICT_TASK_ID", "train")  # the probe's stand-in for predict
    page = Settings.from_env().home / "predictions" / f"{safe_name(RUN_ID)}.html"
    page.unlink(missing_ok=True)
    assert _links("train")["Predictions report"] is None  # not written (yet)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<h1>Predictions</h1>")
    url = "/imgclf/report/imgclf_links_probe/manual__2025-01-01T00%3A00%3A00%2B00%3A00"
    try:
        assert _links("train")["Predictions report"] == url
        assert _links("record")["Predictions report"] is None  # only on the predict task
        served = _get(module, url, authorized=True)
        assert served.status_code == 200 and served.text == "<h1>Predictions</h1>"
        assert served.headers["content-security-policy"].startswith("sandbox;")
        assert _get(module, url, authorized=False).status_code == 401
        for bad in ("..%2Fsecret", "%2E%2E", "manual__never_ran"):
            assert _get(module, f"/imgclf/report/{PROBE_DAG_ID}/{bad}", authorized=True
                        ).status_code == 404, bad  # fmt: skip
    finally:
        page.unlink()


# --- the report app ------------------------------------------------------------------------
def _get(module, url: str, authorized: bool):
    """GET ``url`` from an app that mounts the plugin's app as the api-server does."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    entry = module.ImgclfLinksPlugin.fastapi_apps[0]
    lazy = type(entry["app"])()  # a fresh one: overrides stay in this test
    if authorized:  # built now to override its auth; otherwise on the first request
        lazy.app = module.build_report_app()
        lazy.app.dependency_overrides[lazy.app.state.can_read] = lambda: None
    root = FastAPI()
    root.mount(entry["url_prefix"], lazy)  # as airflow.api_fastapi.app.init_plugins does

    async def get():
        transport = httpx.ASGITransport(app=root)
        async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
            return await client.get(url)

    return asyncio.run(get())


def test_the_report_is_served_to_authorized_viewers_only(plugin):
    _, module = plugin
    path = Settings.from_env().run_dir(RUN_ID) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<h1>run report</h1>")
    url = module.report_path("football_classifier", RUN_ID)

    response = _get(module, url, authorized=True)
    assert response.status_code == 200
    assert response.text == "<h1>run report</h1>"
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("sandbox;")
    assert response.headers["x-content-type-options"] == "nosniff"

    anonymous = _get(module, url, authorized=False)
    assert anonymous.status_code == 401  # no Airflow session cookie, no bearer token


def test_the_report_app_serves_nothing_else(plugin):
    _, module = plugin
    secret = Settings.from_env().home / "secret.html"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("no")
    for url in (
        "/imgclf/report/other_dag/" + RUN_ID,  # another DAG
        "/imgclf/report/football_classifier/manual__never_ran",  # no report
        "/imgclf/report/football_classifier/..%2F..%2Fsecret.html",
        "/imgclf/report/football_classifier/%2E%2E%2Fsecret.html",
        "/imgclf/report/football_classifier/%2E%2E",
    ):
        assert _get(module, url, authorized=True).status_code == 404, url
    # the client folds dot segments (browsers too): whatever it asks for, it is not the file
    raw = _get(module, "/imgclf/report/football_classifier/../../secret.html", authorized=True)
    assert raw.status_code != 200
    assert safe_name("../secret.html") == "secret.html"  # a run dir name, never a path
