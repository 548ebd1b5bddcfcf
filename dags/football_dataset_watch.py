"""
### football_dataset_watch: retrain when the images on GitHub change

Lists the class folders of the source repository (no downloads: two small API calls) and
compares the dataset fingerprint (a hash over the class and git blob SHA of every image) with the
one the champion model was trained on. When they differ it updates the Asset
`imgclf://football/dataset`, which triggers `football_classifier`; when they match it is skipped
and nothing is triggered.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, BaseHook, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from imgclf import config, tasks
from imgclf import params as run_params

SETTINGS = config.Settings.from_env()
D = run_params.DEFAULTS

with DAG(
    dag_id="football_dataset_watch",
    description="Trigger football_classifier when the GitHub images change",
    doc_md=__doc__,
    schedule="0 */6 * * *",  # 4 checks a day: 8 of the 60 unauthenticated requests an hour
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "repo": Param(D["repo"], type="string", pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"),
        "ref": Param(D["ref"], type="string", minLength=1),
        "classes": Param(
            D["classes"],
            type="object",
            minProperties=2,
            additionalProperties={"type": "string", "minLength": 1},
        ),
    },
    tags=["imgclf", "watch"],
    default_args={"owner": "imgclf", "retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:

    @task(outlets=[Asset(config.DATASET_ASSET)])
    def check_dataset() -> dict:
        ctx = get_current_context()
        api_url, token = tasks.github_endpoint(BaseHook.get_connection)
        result = tasks.dataset_changed(SETTINGS, dict(ctx["params"]), api_url, token)
        if not result["changed"]:
            raise AirflowSkipException(
                f"dataset unchanged ({result['fingerprint'][:12]}): nothing to retrain"
            )
        ctx["outlet_events"][Asset(config.DATASET_ASSET)].extra = {
            "fingerprint": result["fingerprint"]
        }
        return result

    check_dataset()
