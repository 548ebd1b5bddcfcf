"""
### football_classifier_predict: score a folder of images with the champion (or a version)

Trigger by hand with `images_dir`. Writes one CSV row per image (path, predicted class,
probability); unreadable files are listed with the reason, never fatal. The CSV goes to `out`,
or to `IMGCLF_HOME/predictions/<run_id>.csv`. The predictions report (counts per class, the least
confident images, the unreadable files) is `IMGCLF_HOME/predictions/<run_id>.html`, linked as
"Predictions report" from the `predict` task (plugins/imgclf_links.py).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from imgclf import dag_tasks
from imgclf import params as run_params
from imgclf.operators import spark_job
from imgclf.settings import Settings, safe_name

SETTINGS = Settings.from_env()

with DAG(
    dag_id="football_classifier_predict",
    description="Batch prediction with the champion model",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={name: Param(**spec) for name, spec in run_params.predict_airflow_params().items()},
    tags=["imgclf", "predict"],
    default_args={"owner": "imgclf", "retries": 0, "execution_timeout": SETTINGS.timeout()},
) as dag:

    @task
    def resolve() -> dict:
        ctx = get_current_context()
        params = ctx["params"]
        from pathlib import Path

        images = Path(params["images_dir"])
        if not images.is_absolute() or not images.is_dir():
            raise AirflowFailException(f"images_dir {str(images)!r} is not an absolute folder")
        try:
            found = dag_tasks.resolve_version(SETTINGS, params["version"])
        except KeyError as exc:
            raise AirflowFailException(str(exc)) from None
        out = (params["out"] or "").strip() or str(
            SETTINGS.home / "predictions" / f"{safe_name(ctx['run_id'])}.csv"
        )
        # the report's place follows from the run id alone: the plugin's link finds it there
        report = SETTINGS.home / "predictions" / f"{safe_name(ctx['run_id'])}.html"
        return {**found, "out": out, "report": str(report)}

    resolved = resolve()
    predict = spark_job(
        SETTINGS,
        "predict",
        "predict.py",
        [
            "--images", "{{ params.images_dir }}",
            "--model-uri", "{{ ti.xcom_pull(task_ids='resolve')['model_uri'] }}",
            "--version", "{{ ti.xcom_pull(task_ids='resolve')['version'] }}",
            "--out", "{{ ti.xcom_pull(task_ids='resolve')['out'] }}",
            "--report", "{{ ti.xcom_pull(task_ids='resolve')['report'] }}",
        ],
    )  # fmt: skip
    resolved >> predict
