"""tools/suite_cost.py: each module's CPU, read from the machine's busy time."""

from __future__ import annotations

import json
import os

from tools import suite_cost


def test_busy_time_is_user_nice_system_irq_softirq_not_idle_or_iowait():
    tick = os.sysconf("SC_CLK_TCK")
    stat = f"cpu  {3 * tick} {tick} {2 * tick} 999999 888888 {tick} {tick} 0 0 0\ncpu0 1 2 3\n"
    assert suite_cost.busy_seconds(stat) == 8.0


def test_a_module_that_burns_cpu_is_charged_for_it_and_a_failing_one_fails_the_run(
    tmp_path, capsys
):
    burn = tmp_path / "test_burn.py"
    burn.write_text(
        "import time\n"
        "def test_burn():\n"
        "    t = time.process_time()\n"
        "    while time.process_time() - t < 1.0:\n"
        "        pass\n"
    )
    fail = tmp_path / "test_fail.py"
    fail.write_text("def test_fail():\n    assert False\n")
    out = tmp_path / "cost.json"
    assert suite_cost.main([str(burn), str(fail), "--json", str(out)]) == 1  # one failed
    rows = {r["module"]: r for r in json.loads(out.read_text())}
    assert rows[burn.as_posix()]["rc"] == 0 and rows[fail.as_posix()]["rc"] == 1
    assert rows[burn.as_posix()]["cpu_s"] >= 0.9  # its second of CPU, whatever else ran
    assert rows[burn.as_posix()]["wall_s"] >= 1.0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].endswith(burn.as_posix())  # the most expensive first
    assert printed[-1].endswith("all, one after another")
