"""benchmarks.scale: its memory sampler (what it adds up is what is resident, once) and its
side-by-side line."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from benchmarks.scale import PeakRss, side_by_side

# A stand-in "Spark driver": argv names SparkSubmit; it holds ~200 MiB, then forks a child
# that never execs (as the JVM's forks for chmod or the Python daemon, for an instant):
# the child's RSS is the parent's pages, shared.
DRIVER = """
import os, sys, time
held = bytearray(200 * 1024 * 1024)
for i in range(0, len(held), 4096):
    held[i] = 1
if os.fork() == 0:
    time.sleep(1.5)
    os._exit(0)
print("ready", flush=True)
time.sleep(1.5)
"""


def test_a_fork_of_the_driver_is_not_counted_twice():
    driver = [sys.executable, "-c", DRIVER, "org.apache.spark.deploy.SparkSubmit"]
    launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    # the sampler watches a tree: here a launcher, its driver, the driver's fork
    tree = subprocess.Popen(
        [sys.executable, "-c", launcher, *driver], stdout=subprocess.PIPE, text=True
    )
    with PeakRss(tree.pid, every=0.05) as rss:
        assert tree.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        tree.wait(timeout=30)
    mib = rss.peak["driver_jvm"] / 2**20
    assert 200 <= mib < 300, mib  # the driver once; twice would be over 400


HOLD = """
import sys, time
held = bytearray(int(sys.argv[1]) * 1024 * 1024)
for i in range(0, len(held), 4096):
    held[i] = 1
print("ready", flush=True)
time.sleep(2)
"""
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def test_on_a_cluster_the_executor_is_counted_apart_from_the_driver():
    """Two trees, as with ``--standalone``: the DAG run's (the driver under it) and the
    standalone worker's (the executor under it); each is counted once, under its own name."""
    dag = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-c", HOLD, "120",
         "org.apache.spark.deploy.SparkSubmit"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-c", HOLD, "240",
         "org.apache.spark.executor.CoarseGrainedExecutorBackend"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    with PeakRss(dag.pid, worker.pid, every=0.05) as rss:
        assert dag.stdout.readline().strip() == "ready"
        assert worker.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        dag.wait(timeout=30)
        worker.wait(timeout=30)
    driver_mib = rss.peak["driver_jvm"] / 2**20
    executor_mib = rss.peak["executor_jvm"] / 2**20
    assert 120 <= driver_mib < 200, driver_mib
    assert 240 <= executor_mib < 320, executor_mib


def _result(n: int, featurize: float | None, driver: int) -> dict:
    return {
        "images": n,
        "dag_wall_s": 1.0,
        "tasks_s": {"train": 1.0},
        "download_files_per_s": 1.0,
        "featurize_images_per_s": featurize,
        "before_featurize_s": 1.0,
        "peak_rss_mib": {"driver": driver, "executor_jvm": 0, "worker": 1},
    }


def test_each_size_is_compared_with_plain_keras_measured_around_it():
    """The host drifts over a run: a size's ratio uses the mean of the plain-Keras rates
    measured just before and just after it, and the pair is printed."""
    results = [_result(60, 10.0, 1000), _result(6000, 150.0, 1100)]
    line = side_by_side(results, [100.0, 140.0, 160.0])
    assert line["plain_keras_images_per_s"] == [120.0, 150.0]
    assert line["plain_keras_before_after"] == [[100.0, 140.0], [140.0, 160.0]]
    assert line["featurize_vs_plain_keras"] == [round(10 / 120, 3), 1.0]
    assert line["driver_rss_vs_first"] == [1.0, 1.1]


def test_a_size_without_a_featurization_has_no_ratio_and_the_rates_must_fit():
    line = side_by_side([_result(60, None, 1000)], [100.0, 100.0])
    assert line["featurize_vs_plain_keras"] == [None]
    with pytest.raises(ValueError, match="2 plain-Keras rates for 2 sizes"):
        side_by_side([_result(60, 1.0, 1), _result(600, 1.0, 1)], [100.0, 100.0])
