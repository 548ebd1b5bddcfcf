"""Test-wide setup: an isolated Airflow home and data root, found before Airflow is imported."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from imgclf import spark_conf
from imgclf.settings import Settings
from tests.fixtures_images import make_images, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="imgclf-tests-"))

# Airflow reads its configuration at import: set it before any test module imports airflow.
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[2]"}')
os.environ["IMGCLF_HOME"] = str(_SESSION_DIR / "home")
# Derived files (models converted to OpenVINO) are the same whichever data root a test uses:
# one cache for the session, made by the first process (the xdist controller), inherited by
# the workers and everything they start. A test of the cache itself gives its own root.
os.environ.setdefault("IMGCLF_TEST_CACHE", str(_SESSION_DIR / "cache"))
os.environ["IMGCLF_CACHE_DIR"] = os.environ["IMGCLF_TEST_CACHE"]
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
# spark-submit and the interpreter executors use: this venv's
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ["IMGCLF_PYSPARK_PYTHON"] = sys.executable


def pytest_unconfigure(config):
    """The session's folder (Airflow home, data root: megabytes a run) goes with the session."""
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


# py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after
# pytest closed the stream: keep its INFO lines out.
logging.getLogger("py4j").setLevel(logging.WARNING)


# What a test needs, said by markers (pyproject.toml) and applied here from where it is and what
# it uses, so that `-m "not spark"` and `make test-fast` select what they say: tests/spark/ is
# the Spark tier; elsewhere a test that uses one of these fixtures gets the marker, and a test
# that starts Spark some other way (spark-submit in a subprocess) marks itself.
SPARK_FIXTURES = {"spark", "lite0_rows", "face_rows"}
SHARED_FIXTURES = {"shared", "football", "lite0", "lite0_rows", "face_rows"}
E2E_MODULES = {"test_dag_e2e.py", "test_dag_standalone.py"}  # whole DAG runs: Spark too
E2E_FIXTURES = {"first_run"}  # the shared real-image DAG run (tests/dags/conftest.py)
# a server of the stack started for real, its runs driven from outside: `make test-system`
SYSTEM_MODULES = {"test_approval_server.py", "test_dag_standalone.py"}


# Under pytest-xdist (`make test`: `-n auto --dist loadgroup`) a session fixture is set up once
# per worker that runs a test using it. The tests of one module run on one worker (its module
# fixtures), and so do the modules sharing an expensive session fixture (below: checked at
# collection). xdist's own `xdist_group` marks are not used: with pytest 9.2 they are silently
# ignored (pytest-dev/pytest-xdist#1386). What a fixture writes is per worker anyway (each worker
# imports this file: its own _SESSION_DIR, AIRFLOW_HOME, IMGCLF_HOME, tmp_path).
SHARED_SCOPES = {  # module -> the expensive session fixture its tests share with other modules
    "tests/dags/test_dag_e2e.py": "first_run",  # a whole DAG run
    "tests/dags/test_dag_integrity.py": "first_run",
    "tests/serving/test_app.py": "champion",  # a model trained and registered
    "tests/serving/test_flavor.py": "champion",
    "tests/serving/test_page.py": "champion",
    "tests/serving/test_predictions_report.py": "champion",
    "tests/spark/test_featurizer.py": "lite0_rows",  # the real images' features
    "tests/spark/test_local_lr.py": "lite0_rows",
    "tests/serving/test_flavor_tf.py": "lite0_rows",
    "tests/spark/test_face.py": "face_rows",  # the real images' dlib-face features
    "tests/spark/test_evaluate.py": "face_rows",
    "tests/spark/test_jobs.py": "face_rows",
    "tests/serving/test_flavor_face.py": "face_rows",
}
LONGEST_FIRST = ("first_run",)  # started first, so that it ends first


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup`: one work unit a module, or a SHARED_SCOPES group of modules."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_SCOPES.get(module, module)

    return SharedFixtureScheduling(config, log)


def _check_shared_scopes(items) -> None:
    """A test using an expensive session fixture is in a module SHARED_SCOPES names for it."""
    for item in items:
        module = item.path.relative_to(ROOT).as_posix()
        for name in set(SHARED_SCOPES.values()) & set(getattr(item, "fixturenames", ())):
            if SHARED_SCOPES.get(module) != name:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {name}: add {module!r}: {name!r} to SHARED_SCOPES "
                    "(tests/conftest.py), or each xdist worker makes its own"
                )


def pytest_collection_modifyitems(config, items):
    if config is not None:  # not test_markers' fake items
        _check_shared_scopes(items)
        if os.environ.get("PYTEST_XDIST_WORKER"):

            def rank(item) -> int:
                scope = SHARED_SCOPES.get(item.path.relative_to(ROOT).as_posix(), "")
                return LONGEST_FIRST.index(scope) if scope in LONGEST_FIRST else len(LONGEST_FIRST)

            items.sort(key=rank)  # stable: the order within each rank is kept
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        used = set(getattr(item, "fixturenames", ())) - set(params)  # a parameter is no fixture
        if item.path.name in E2E_MODULES or used & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.spark)
        if item.path.name in SYSTEM_MODULES:
            item.add_marker(pytest.mark.system)
        if used & SPARK_FIXTURES or item.path.parent.name == "spark":
            item.add_marker(pytest.mark.spark)
        if used & SHARED_FIXTURES:
            item.add_marker(pytest.mark.shared)


def shared_dir() -> Path | None:
    """``../shared`` next to the project (or ``$IMGCLF_SHARED``), if present."""
    path = Path(os.environ.get("IMGCLF_SHARED", ROOT.parent / "shared"))
    return path if (path / "datasets" / "football").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        pytest.skip("needs ../shared (the real images and model): set IMGCLF_SHARED or add it")
    return path


@pytest.fixture(scope="session")
def football(shared: Path) -> Path:
    return shared / "datasets" / "football"


@pytest.fixture(scope="session")
def lite0(shared: Path) -> Path:
    path = shared / "models" / "efficientnet_lite0_imagenet_notop.keras"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    return path


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from spark_tasks.session import use_this_interpreter_for_workers

    use_this_interpreter_for_workers()  # not left to PATH
    session = (
        SparkSession.builder.master("local[2]")
        .appName("imgclf-tests")
        .config(map=spark_conf.job_conf(Settings.from_env()))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def lite0_rows(spark, lite0, football):
    """The real 60 images' Lite0 features (TensorFlow runtime, as the DAG's default runtime
    computes them), once for the session: rows of ``path, label, sha256, features``."""
    from spark_tasks.featurizer import DeepImageFeaturizer
    from spark_tasks.image_files import read_images_dir

    featurizer = DeepImageFeaturizer(modelPath=str(lite0), batchSize=16)
    images = read_images_dir(spark, football)
    return featurizer.transform(images).select("path", "label", "sha256", "features").collect()


@pytest.fixture(scope="session")
def face_rows(spark, football):
    """The real 60 images' dlib-face features (``modelName="dlib-face"``: dlib looks for faces
    at full resolution, the slowest featurizer), once for the session: rows of ``path, label,
    sha256, features``. tests/spark/test_face.py checks them against dlib called directly."""
    from spark_tasks.featurizer import DeepImageFeaturizer
    from spark_tasks.image_files import read_images_dir

    featurizer = DeepImageFeaturizer(modelName="dlib-face")
    images = read_images_dir(spark, football)
    return featurizer.transform(images).select("path", "label", "sha256", "features").collect()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture
def images(tmp_path):
    return make_images(tmp_path / "images")


def made_once(name: str, make) -> Path:
    """``name`` in the session's shared folder, made by ``make(path)`` in the first process that
    asks (the xdist workers share the folder: ``IMGCLF_TEST_CACHE``), under a lock: the others
    wait for it, then read it."""
    from imgclf.files import locked

    root = Path(os.environ["IMGCLF_TEST_CACHE"]) / "made-once"
    path = root / name
    with locked(root / f".{name}.lock"):
        if not path.exists():
            stage = root / f".{name}.stage"
            stage.unlink(missing_ok=True)
            make(stage)
            stage.rename(path)
    return path


@pytest.fixture(scope="session")
def airflow_db():
    """The embedded SQLite database, migrated: ``airflow db migrate`` once for the session,
    copied into this worker's Airflow home."""

    def migrate(db: Path) -> None:
        env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}"}
        out = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            capture_output=True, text=True, timeout=600, env=env, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made_once("airflow.db", migrate), home / "airflow.db")


@pytest.fixture(scope="session")
def seed_mlflow_store():
    """``seed(home)`` gives a new data root an empty, migrated embedded MLflow store: what its
    first task would create (alembic takes seconds a store), migrated once per session. The
    real-data DAG run in tests/dags/test_dag_e2e.py creates its own, as a user's first run does."""

    def migrate(db: Path) -> None:
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the schema

    template = made_once("mlflow.db", migrate)

    def seed(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "mlflow.db").exists():
            shutil.copyfile(template, home / "mlflow.db")
        return home

    return seed
