"""The markers say what a test needs: tests/conftest.py applies them from where a test is and
the fixtures it uses, so that `-m "not spark"` and `make test-fast` select what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest


class Item:
    def __init__(self, path: str, fixtures: tuple[str, ...] = ()):
        self.path = Path(path)
        self.fixturenames = list(fixtures)
        self.marks: set[str] = set()

    def add_marker(self, mark) -> None:
        self.marks.add(mark.name)


@pytest.mark.parametrize(
    ("path", "fixtures", "expected"),
    [
        ("tests/unit/test_params.py", ("tmp_path",), set()),
        ("tests/unit/test_models.py", ("lite0",), {"shared"}),
        ("tests/benchmarks/test_decode.py", ("spark", "tmp_path"), {"spark"}),
        ("tests/spark/test_keras_models.py", ("tiny_model",), {"spark"}),
        ("tests/spark/test_local_lr.py", ("spark", "lite0_rows"), {"spark", "shared"}),
        ("tests/dags/test_dag_integrity.py", ("dag",), set()),
        ("tests/dags/test_dag_e2e.py", ("first_run",), {"e2e", "spark"}),
        ("tests/dags/test_dag_standalone.py", (), {"e2e", "spark", "system"}),
        ("tests/dags/test_approval_server.py", ("football",), {"shared", "system"}),
        ("tests/attack/test_hostile_remote.py", ("football",), {"shared"}),
    ],
)
def test_markers_follow_from_the_folder_and_the_fixtures(path, fixtures, expected):
    item = Item(path, fixtures)
    conftest.pytest_collection_modifyitems(None, [item])
    assert item.marks == expected
