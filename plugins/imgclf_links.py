"""From the Airflow UI to a run's results in one click: "MLflow run" and "Run report" buttons on
the ``record`` task of ``football_classifier`` (task instance page, "Extra Links"), and
"Predictions report" on the ``predict`` task of ``football_classifier_predict``.

How Airflow 3.3 shows them: a plugin's ``global_operator_extra_links`` are offered for every task
and computed by the api-server when the page asks for them
(``GET .../taskInstances/{task_id}/links`` -> ``SerializedBaseOperator.get_extra_links`` ->
``link.get_link(operator, ti_key=...)``); they are not computed by the task (the task runner only
runs ``operator_extra_links`` declared on the operator, in ``finalize``). So ``get_link`` here runs
in the api-server and reads the ``record`` task's return value (an XCom in the metadata DB):
``{"report": "/data/runs/<run>/report.html", "mlflow_run_url": "http://...#/experiments/1/runs/<id>"}``.
Any other task, or a ``record`` without those keys, gets "" (the UI then shows no button).

The UI only renders http(s) or same-origin links, so the report (a file on the data volume) is
served by a small FastAPI app mounted by this plugin at ``/imgclf``, behind Airflow's own login
and DAG permissions, from ``<IMGCLF_HOME>/runs/<run>/report.html`` (never a path taken from XCom).

Enable: ``AIRFLOW__CORE__PLUGINS_FOLDER=<repo>/plugins`` (docker compose: ``/opt/imgclf/plugins``).
Every Airflow process imports this file (task processes too, for macros), so it imports only the
SDK at module level; FastAPI and the api-server's security code load on the first report request.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

DAG_ID = "football_classifier"
TASK_ID = "record"
PREDICT_DAG_ID, PREDICT_TASK_ID = "football_classifier_predict", "predict"
URL_PREFIX = "/imgclf"  # where the report app is mounted in the api-server


# --- what the record task returned ---------------------------------------------------------
def record_value(ti_key: TaskInstanceKey) -> dict[str, Any] | None:
    """The ``record`` task's return value for ``ti_key``, or None (another task, no value yet).

    Read straight from the metadata DB (the api-server has it; ``XCom.get_value`` of the SDK
    needs a task's supervisor). The value is plain JSON: it is parsed, never deserialised into
    objects (as Airflow's own ``XComOperatorLink`` does).
    """
    if (ti_key.dag_id, ti_key.task_id) != (DAG_ID, TASK_ID):
        return None
    from airflow.models.xcom import XCOM_RETURN_KEY, XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                run_id=ti_key.run_id,
                key=XCOM_RETURN_KEY,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    if row is None:
        return None
    value = row.value
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def mlflow_run_url(value: dict[str, Any] | None, ui_url: str) -> str:
    """``value["mlflow_run_url"]`` when it points at the configured MLflow UI, else ""."""
    url = (value or {}).get("mlflow_run_url")
    if not isinstance(url, str) or not url.strip():
        return ""
    url, allowed = urlsplit(url.strip()), urlsplit(ui_url)
    if url.scheme not in ("http", "https") or (url.scheme, url.netloc) != (
        allowed.scheme,
        allowed.netloc,
    ):
        log.warning("record's mlflow_run_url is not on %s: no link", ui_url)
        return ""
    return url.geturl()


def report_path(dag_id: str, run_id: str) -> str:
    """The report's URL path in the api-server (``[api] base_url``'s path, then the app's)."""
    from airflow.configuration import conf

    base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base}{URL_PREFIX}/report/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def predictions_report_file(run_id: str):
    """Where ``football_classifier_predict`` writes a run's report (``resolve``'s rule), resolved
    under ``IMGCLF_HOME/predictions``; ValueError for a run id that is no file name."""
    from imgclf.settings import safe_name

    folder = (_settings().home / "predictions").resolve()
    path = (folder / f"{safe_name(run_id)}.html").resolve()
    if path.parent != folder:
        raise ValueError(run_id)
    return path


def _settings():
    from imgclf.settings import Settings  # the DAG's own resolution of IMGCLF_HOME and URLs

    return Settings.from_env()


# --- the links ------------------------------------------------------------------------------
class MlflowRunLink(BaseOperatorLink):
    """The MLflow run of this Airflow run (the tracking server's UI)."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        try:
            value = record_value(ti_key)
            return mlflow_run_url(value, _settings().mlflow_ui_url) if value else ""
        except Exception:  # one broken link must not fail the task page's whole links request
            log.exception("no %r link for %s", self.name, ti_key)
            return ""


class RunReportLink(BaseOperatorLink):
    """The run's report.html, served by the api-server (see ``report_app``)."""

    name = "Run report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        try:
            value = record_value(ti_key)
            if not value or not value.get("report"):
                return ""
            return report_path(ti_key.dag_id, ti_key.run_id)
        except Exception:
            log.exception("no %r link for %s", self.name, ti_key)
            return ""


class PredictionsReportLink(BaseOperatorLink):
    """A ``football_classifier_predict`` run's predictions report, once its ``predict`` wrote it
    (a Spark job: no XCom; the page's place follows from the run id alone)."""

    name = "Predictions report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if (ti_key.dag_id, ti_key.task_id) != (PREDICT_DAG_ID, PREDICT_TASK_ID):
            return ""
        try:
            if not predictions_report_file(ti_key.run_id).is_file():
                return ""
            return report_path(ti_key.dag_id, ti_key.run_id)
        except Exception:
            log.exception("no %r link for %s", self.name, ti_key)
            return ""


# --- the report, behind Airflow's login -----------------------------------------------------
# The page is self-contained (inline CSS, data: images, no script): a sandboxed, opaque origin
# with nothing else allowed, so even a crafted page could not use the viewer's Airflow session.
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-cache",
}


def build_report_app():
    """``GET /report/{dag_id}/{run_id}``: needs the viewer's Airflow session (the UI's cookie or
    a bearer token) and read access to the DAG's task instances, as the links endpoint does."""
    from airflow.api_fastapi.core_api.security import DagAccessEntity, requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse

    from imgclf.settings import safe_name

    app = FastAPI(title="imgclf run reports", docs_url=None, redoc_url=None, openapi_url=None)
    can_read = requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)

    @app.get("/report/{dag_id}/{run_id:path}", dependencies=[Depends(can_read)])
    def report(dag_id: str, run_id: str) -> FileResponse:
        if dag_id == PREDICT_DAG_ID:
            try:
                path = predictions_report_file(run_id)
            except ValueError:
                raise HTTPException(404, "no such run") from None
            if not path.is_file():
                raise HTTPException(404, "no report for this run (yet)")
            return FileResponse(path, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)
        if dag_id != DAG_ID:
            raise HTTPException(404, "no report for this DAG")
        try:
            runs = _settings().runs_dir.resolve()
            path = (runs / safe_name(run_id) / "report.html").resolve()
        except ValueError:
            raise HTTPException(404, "no such run") from None
        if path.parent.parent != runs or not path.is_file():
            raise HTTPException(404, "no report for this run (yet)")
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)

    app.state.can_read = can_read  # tests override it
    return app


class LazyReportApp:
    """ASGI app that builds ``build_report_app()`` on its first request (api-server only)."""

    def __init__(self) -> None:
        self.app = None

    async def __call__(self, scope, receive, send) -> None:
        if self.app is None:
            self.app = build_report_app()
        await self.app(scope, receive, send)


class ImgclfLinksPlugin(AirflowPlugin):
    name = "imgclf_links"
    global_operator_extra_links = [MlflowRunLink(), RunReportLink(), PredictionsReportLink()]
    fastapi_apps = [
        {"name": "imgclf run reports", "app": LazyReportApp(), "url_prefix": URL_PREFIX}
    ]
