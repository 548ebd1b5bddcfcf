"""The DAG parses cleanly, has exactly the intended shape, and validates its params."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.dags.conftest import ROOT, load_dag

EXPECTED = {
    # the checked params (evidence: its `evidence` flag)
    "validate_params": {"download", "choose_branch", "gate", "promote", "evidence"},
    "download": {"train", "gate"},
    "train": {"choose_branch"},
    "choose_branch": {"tune", "gate"},
    "tune": {"gate"},
    "gate": {"challenge", "evidence"},
    "challenge": {"approve"},
    "approve": {"promote"},  # a person's OK, when `approval` asks (auto: no wait)
    "evidence": set(),
    "promote": set(),
    "record": set(),
}
WORK = set(EXPECTED) - {"record"}


@pytest.fixture(scope="module")
def dag():
    return load_dag()


def test_structure_is_exact(dag):
    work = {t.task_id: set(t.downstream_task_ids) - {"record"} for t in dag.tasks}
    assert work == EXPECTED
    record = dag.get_task("record")  # the run record: last, whatever the outcome
    assert record.is_teardown and record.trigger_rule == "all_done_setup_success"
    assert set(record.upstream_task_ids) == WORK - {"record"}
    assert not record.on_failure_fail_dagrun  # the run's state stays that of the work
    assert dag.get_task("gate").trigger_rule == "none_failed_min_one_success"
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    # the provider's operator (our subclass of it)
    for job in ("train", "tune", "challenge", "evidence"):
        assert isinstance(dag.get_task(job), SparkSubmitOperator)


def test_schedule_and_concurrency(dag):
    from airflow.sdk import AssetOrTimeSchedule

    from imgclf.settings import DATASET_ASSET

    assert isinstance(dag.timetable, AssetOrTimeSchedule)  # weekly, or new data
    assert dag.timetable.timetable.expression == "0 0 * * 0"
    assert [a.uri for a in dag.timetable.asset_condition.objects] == [DATASET_ASSET]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.tags) == {"imgclf", "spark", "transfer-learning"}
    assert dag.doc_md and "football_classifier" in dag.doc_md


@pytest.mark.parametrize(
    ("dag_id", "now", "first_run"),
    [
        # mid-week, and 2 h after Sunday's tick (inside run_immediately=False's 10 % window)
        ("football_classifier", (2026, 3, 4, 12, 0), (2026, 3, 8, 0, 0)),
        ("football_classifier", (2026, 3, 1, 2, 0), (2026, 3, 8, 0, 0)),
        ("football_dataset_watch", (2026, 3, 4, 7, 0), (2026, 3, 4, 12, 0)),
        ("football_dataset_watch", (2026, 3, 4, 6, 10), (2026, 3, 4, 12, 0)),
    ],
)  # fmt: skip
def test_unpausing_waits_for_the_next_cron_tick(monkeypatch, dag_id, now, first_run):
    """The first scheduled run is the next tick after now, never the latest past tick.

    Computed as the dag processor does on every parse (``DagModel.next_dagrun_create_after``,
    which the scheduler acts on as soon as the DAG is unpaused): the serialized DAG's timetable,
    ``next_dagrun_info(last_automated_data_interval=None, restriction=<the DAG's start dates,
    catchup>)``, at a frozen "now" (``airflow.timetables.trigger.utcnow``).
    """
    import pendulum
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.timetables import trigger

    now = pendulum.datetime(*now, tz="UTC")
    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    serialized = LazyDeserializedDAG.from_dag(load_dag(dag_id))._real_dag
    restriction = serialized._time_restriction  # start dates of the DAG and its tasks, catchup
    assert restriction.catchup is False
    info = serialized.timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction
    )
    assert info is not None
    assert info.run_after == info.logical_date == pendulum.datetime(*first_run, tz="UTC") > now
    # the same through the method the dag processor calls
    info = serialized.next_dagrun_info(last_automated_run_info=None)
    assert info.run_after == pendulum.datetime(*first_run, tz="UTC")


def test_retries_where_they_help_and_never_on_the_gate(dag):
    retries = {t.task_id: t.retries for t in dag.tasks}
    assert retries["gate"] == 0 and retries["validate_params"] == 0
    assert retries["choose_branch"] == 0
    assert retries["download"] >= 1 and retries["train"] >= 1 and retries["tune"] >= 1
    assert retries["challenge"] >= 1


def test_param_defaults_match_the_reference_run(dag):
    p = {k: dag.params[k] for k in dag.params}
    assert p["model"] == "InceptionV3"
    assert (p["min_accuracy"], p["target_accuracy"], p["test_fraction"], p["seed"]) == (
        0.8, 0.95, 0.4, 12,
    )  # fmt: skip
    assert p["max_iter"] == 30
    assert p["repo"] == "asherif844/ApacheSparkDeepLearningCookbook" and p["ref"] == "master"
    assert p["classes"] == {"messi": "CH13/football/messi", "ronaldo": "CH13/football/ronaldo"}


@pytest.mark.parametrize(
    ("name", "bad", "bound"),
    [
        ("min_accuracy", 1.5, "maximum of 1"), ("target_accuracy", -0.1, "minimum of 0"),
        ("test_fraction", 1.0, "maximum of 1"), ("test_fraction", 0, "minimum of 0"),
        ("test_fraction", -0.2, "minimum of 0"), ("seed", -1, "minimum of 0"),
        ("max_iter", 0, "minimum of 1"), ("pooling", "sum", "not one of"),
        ("repo", "not a repo", "does not match"), ("cv_folds", 1, "minimum of 2"),
        ("classes", {"messi": "x"}, "enough properties"),
        ("classes", {"_m": "a", "r": "b"}, "class name '_m' starts with '_'"),
        ("tune_grid", {"reg_param": [0.1], "max_iter": [9]}, "required property"),
        ("tune_grid", {"reg_param": [], "elastic_net_param": [0.0], "max_iter": [10]},
         "should be non-empty"),
    ],
)  # fmt: skip
def test_bad_param_values_fail_the_first_task_with_one_line(dag, name, bad, bound):
    """Airflow checks a trigger's values against its Params and answers jsonschema's whole
    error (schema and instance, dozens of lines): the Params leave the bounds to
    ``validate_params``, which names the parameter and the bound in one line."""
    from imgclf import params

    assert dag.params.get_param(name).resolve(bad) == bad  # the trigger is accepted
    with pytest.raises(ValueError, match=r"^invalid run parameters: ") as err:
        params.validate({name: bad}, check_weights=False)
    message = str(err.value)
    assert "\n" not in message and bound in message, message
    assert name in message or name == "classes", message
    assert len(message) < 300 and "Failed validating" not in message, message


def test_a_value_of_the_wrong_type_is_still_refused_by_the_form(dag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param("seed").resolve("twelve")


def test_the_checked_params_flow_to_the_python_tasks_through_xcom(dag):
    """validate_params returns the checked values; the tasks that need them get them as their
    argument (nothing re-reads params.json or the raw template), and gate also gets what the
    download returned."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    for task_id in ("download", "choose_branch", "gate", "promote"):
        first = dag.get_task(task_id).op_args[0]
        assert isinstance(first, XComArg) and first.operator.task_id == "validate_params"
    dataset = dag.get_task("gate").op_args[1]
    assert isinstance(dataset, XComArg) and dataset.operator.task_id == "download"
    enabled = dag.get_task("evidence").enabled  # the checked `evidence` flag, not the raw one
    assert isinstance(enabled, XComArg) and enabled.operator.task_id == "validate_params"
    assert enabled.key == "evidence"
    assert "load_params" not in (ROOT / "dags" / "football_classifier.py").read_text()


def test_jobs_get_only_the_run_id_and_read_the_pinned_params(dag):
    """The validated, normalised params flow downstream: no job re-reads the raw template."""
    for task_id, script in (
        ("train", "train.py"),
        ("tune", "tune.py"),
        ("challenge", "challenge.py"),
        ("evidence", "evidence.py"),
    ):
        job = dag.get_task(task_id)
        assert job.application.endswith(f"spark_tasks/{script}")
        assert "{{ run_id }}" in job.application_args
        assert not any("params." in a for a in job.application_args)
        assert job._conn_id == "spark_default"
        assert job.conf["spark.pyspark.python"] == sys.executable


def _spark(host: str) -> str:
    return json.dumps({"conn_type": "spark", "host": host})


@pytest.mark.parametrize(
    "connection",
    [_spark("local[*]"), _spark("spark://spark-master:7077"), "spark://localhost:7077", None],
)
def test_every_job_submits_with_the_projects_conf_on_any_master(dag, monkeypatch, connection):
    """What execute() submits with, as the provider's hook resolves the connection when the
    task runs, whichever master (no connection: yarn): the project's conf, unchanged
    (spark_conf.job_conf). Which JVM options that conf holds is asserted once, in
    tests/unit/test_spark_conf.py, and by its effect on a JVM in tests/spark."""
    from imgclf import spark_conf
    from imgclf.settings import Settings

    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_SPARK_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", connection)
    expected = spark_conf.job_conf(Settings.from_env())
    assert expected["spark.pyspark.python"] == sys.executable  # the project's interpreter
    local = connection is not None and "local[" in connection
    for task_id in ("train", "tune", "challenge", "evidence"):
        hook = dag.get_task(task_id)._get_hook()
        # local mode: every socket of the job on loopback (tests/attack/test_spark_sockets.py);
        # on a cluster the executors must reach the driver: its address is the cluster's to say
        assert hook._conf == ({**spark_conf.loopback_conf(), **expected} if local else expected)
        assert (hook._conf.get("spark.driver.bindAddress") == "127.0.0.1") is local
        assert ((hook._env_vars or {}).get("SPARK_LOCAL_IP") == "127.0.0.1") is local
        # the settings the DAG read: the data root, and the cache these tests set apart
        assert hook._env_vars["IMGCLF_HOME"] == str(Settings.from_env().home)
        assert hook._env_vars["IMGCLF_CACHE_DIR"] == os.environ["IMGCLF_CACHE_DIR"]


def test_the_form_is_the_schema_with_titles_and_sections(dag):
    from imgclf.params import PROPERTIES

    assert set(dag.params) == set(PROPERTIES)
    for name, prop in PROPERTIES.items():
        schema = dag.params.get_param(name).schema
        description = dag.params.get_param(name).description
        assert schema["title"] == prop["title"] and schema["section"] == prop["section"]
        assert schema["type"] == prop["type"]
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if bound in prop:  # shown, and checked by validate_params (one line)
                assert f"{prop[bound]})" in description or f"{prop[bound]}," in description, (
                    name, bound,
                )  # fmt: skip
        assert schema.get("examples", prop.get("enum")) == prop.get("enum", prop.get("examples"))
    assert len({p["section"] for p in PROPERTIES.values()}) >= 5


def test_the_watch_and_predict_dags():
    from imgclf.settings import DATASET_ASSET

    watch = load_dag("football_dataset_watch")
    assert [t.task_id for t in watch.tasks] == ["check_dataset"]
    assert [o.uri for o in watch.get_task("check_dataset").outlets] == [DATASET_ASSET]
    assert watch.catchup is False and watch.max_active_runs == 1
    predict = load_dag("football_classifier_predict")
    assert {t.task_id: set(t.downstream_task_ids) for t in predict.tasks} == {
        "resolve": {"predict"}, "predict": set(),
    }  # fmt: skip
    assert predict.schedule is None  # manual only
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        predict.params.get_param("version").resolve("latest")


def test_the_predict_form_has_titles_sections_and_an_optional_out():
    from imgclf.params import PREDICT_PROPERTIES

    predict = load_dag("football_classifier_predict")
    assert set(predict.params) == {"images_dir", "version", "out"} == set(PREDICT_PROPERTIES)
    for name, prop in PREDICT_PROPERTIES.items():
        param = predict.params.get_param(name)
        assert param.schema["title"] == prop["title"] and param.schema["section"]
        assert param.description
    assert len({p["section"] for p in PREDICT_PROPERTIES.values()}) >= 2
    out = predict.params.get_param("out")
    # the trigger form marks a field required unless its type admits null
    assert "null" in out.schema["type"]
    assert out.resolve(None) is None and out.resolve("") == ""  # both: the default CSV path
    assert predict.params.get_param("images_dir").schema["minLength"] == 1


DAG_FILES = [
    "football_classifier.py",
    "football_dataset_watch.py",
    "football_classifier_predict.py",
]
HEAVY = ("tensorflow", "keras", "pyspark", "pandas", "numpy")


@pytest.fixture(scope="module")
def parse_time_imports() -> dict[str, list[str]]:
    """Each DAG file run as the scheduler's parser would, in one fresh interpreter (Airflow is
    imported once): the heavy modules that were new in ``sys.modules`` after each file."""
    code = textwrap.dedent(f"""
        import json, runpy, sys
        found = {{}}
        for name in {DAG_FILES!r}:
            before = set(sys.modules)
            runpy.run_path({str(ROOT / "dags")!r} + "/" + name)
            found[name] = sorted(m for m in {HEAVY!r} if m in sys.modules and m not in before)
        print("HEAVY", json.dumps(found))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("HEAVY "))
    return json.loads(line.removeprefix("HEAVY "))


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_no_heavy_import_at_parse_time(parse_time_imports, dag_file):
    assert parse_time_imports[dag_file] == [], f"{dag_file} imports {parse_time_imports[dag_file]}"


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_every_task_of_every_dag_has_an_execution_timeout(dag_file, monkeypatch):
    """One stalled task must not hold a DAG that runs one run at a time forever: every task
    has a bound, from the settings (generous: an honest run never meets it)."""
    import datetime

    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from imgclf.settings import Settings

    dag = load_dag(dag_file.removesuffix(".py"))
    defaults = Settings.from_env()
    for t in dag.tasks:
        timeout = t.execution_timeout
        assert isinstance(timeout, datetime.timedelta), (dag_file, t.task_id)
        assert datetime.timedelta(minutes=10) <= timeout <= datetime.timedelta(days=1), t.task_id
        if isinstance(t, SparkSubmitOperator):  # every spark-submit job, whatever its name
            assert timeout == defaults.timeout("spark_job"), t.task_id
        elif t.task_id == "download":
            assert timeout == defaults.timeout("download")
        else:
            assert timeout == defaults.timeout(), t.task_id


def test_the_timeouts_are_settings(monkeypatch):
    import datetime

    from imgclf.settings import Settings

    monkeypatch.setenv("IMGCLF_SPARK_JOB_TIMEOUT", "7200")
    monkeypatch.setenv("IMGCLF_TASK_TIMEOUT", "900")
    s = Settings.from_env()
    assert s.timeout("spark_job") == datetime.timedelta(hours=2)
    assert s.timeout() == datetime.timedelta(minutes=15)
    monkeypatch.setenv("IMGCLF_TASK_TIMEOUT", "-1")
    with pytest.raises(ValueError, match=r"IMGCLF_TASK_TIMEOUT=-1\.0 must be >= 1\.0"):
        Settings.from_env()


def test_a_job_switched_off_is_skipped_before_anything_is_submitted(dag, monkeypatch):
    """`evidence: false`: the task is skipped (shown as such), no spark-submit; on: submitted."""
    import copy

    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    from airflow.sdk.exceptions import AirflowSkipException

    submitted = []
    monkeypatch.setattr(SparkSubmitOperator, "execute", lambda self, ctx: submitted.append(1))
    job = copy.copy(dag.get_task("evidence"))
    job.enabled = False  # what the rendered XComArg holds for `evidence: false`
    with pytest.raises(AirflowSkipException, match="evidence: off for this run"):
        job.execute({})
    assert submitted == []
    job.enabled = True
    job.execute({})
    assert submitted == [1]
