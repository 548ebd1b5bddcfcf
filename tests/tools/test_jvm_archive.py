"""The Spark driver's class-data archive: built atomically, mapped by spark-submit, never broken."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imgclf import spark_conf
from imgclf.settings import PROJECT_ROOT, Settings
from tools import jvm_archive

pytestmark = pytest.mark.spark  # builds and maps the archive with spark-submit

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The archive ``make install`` built (with this same code), else one built here."""
    installed = Settings.from_env().jvm_archive
    if installed is not None and installed.is_file():
        yield installed
        return
    target = tmp_path_factory.mktemp("jvm") / "spark.jsa"
    env = {**os.environ, "IMGCLF_JVM_ARCHIVE": str(target)}
    done = subprocess.run(
        [sys.executable, "-m", "tools.jvm_archive", "--workload", "minimal"],
        env=env, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {target}" in done.stdout
    yield target
    target.unlink()  # not left behind in pytest's kept temp folders


def test_built_in_place_with_nothing_left_over(built, monkeypatch):
    assert built.stat().st_size > 10_000_000
    assert list(built.parent.iterdir()) == [built]  # the temporary file was renamed, not copied
    assert jvm_archive.check(built) is None
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", str(built))
    cmd = [sys.executable, "-m", "tools.jvm_archive"]
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert again.returncode == 0 and "exists" in again.stdout


def test_spark_submit_with_the_project_conf_loads_spark_from_it(built, monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", str(built))
    conf = spark_conf.job_conf(Settings.from_env())
    log = tmp_path / "classes.log"
    conf["spark.driver.extraJavaOptions"] += f" -Xlog:class+load=info:file={log}"
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent("""
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.getOrCreate()
        print("ROWS", spark.range(10).count())
        spark.stop()
    """)
    )
    args = [a for k, v in conf.items() for a in ("--conf", f"{k}={v}")]
    done = subprocess.run(
        [BIN / "spark-submit", "--master", "local[1]", *args, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ROWS 10" in done.stdout
    lines = log.read_text().splitlines()
    shared = [ln for ln in lines if "shared objects file (top)" in ln]
    from_jars = [ln for ln in lines if "source: file:" in ln or "source: jar:" in ln]
    assert any("org.apache.spark.SparkContext " in ln for ln in shared)
    assert len(shared) > 10 * len(from_jars), (len(shared), len(from_jars))


def test_a_truncated_archive_is_caught_before_it_is_installed(built, tmp_path, monkeypatch):
    truncated = tmp_path / "bad.jsa"
    with open(built, "rb") as src:
        truncated.write_bytes(src.read(1_000_000))
    monkeypatch.chdir(tmp_path)
    problem = jvm_archive.check(truncated)
    assert problem is not None and "java exited" in problem  # a JVM mapping it crashes
    assert not list(tmp_path.glob("hs_err_pid*.log"))  # its crash log is not left in the cwd


def test_a_failed_recording_installs_nothing(tmp_path, monkeypatch):
    target = tmp_path / "spark.jsa"
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))  # spark-submit cannot start
    with pytest.raises(RuntimeError, match="recording run failed"):
        jvm_archive.build(target)
    assert list(tmp_path.iterdir()) == []
