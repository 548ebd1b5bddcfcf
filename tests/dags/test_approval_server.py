"""A person's OK, through a real Airflow: ``airflow standalone`` (scheduler, dag-processor,
triggerer, api-server on loopback, LocalExecutor, SQLite) with its own AIRFLOW_HOME and data root,
the real 60 images from the GitHub stand-in and the Lite0 model file. Runs triggered and answered
through the REST API (a JWT from ``/auth/token``, the simple auth manager's generated passwords):
``approval=on_change`` with no champion yet asks; a user who is not a respondent is refused and
the run keeps waiting; approved -> champion; the same decision again (approve cleared and rerun:
the candidate is the champion now) does not ask; ``approval=always`` rejected -> registered,
tagged with who and why, not champion; no answer in time -> counts as reject. A browser
screenshot of the Required-actions page with the Markdown body rendered. One server for all, on a
free port; bounded waits that print the server's and the tasks' logs when they run out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from imgclf import registry
from imgclf.testing.github_stub import GitHubStub
from imgclf.testing.standalone import free_port
from tests.dags.conftest import ROOT, run_dir, settings

# one server for the module: under pytest-xdist a module's tests stay on one worker (conftest)
pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.shared]
DAG = "football_classifier"
BIN = Path(sys.executable).parent
START_TIMEOUT = 420  # s: standalone migrates its database, then starts four processes
RUN_TIMEOUT = 600  # s: a run on 2 cores shared with other work
ANSWER_TIMEOUT = 90  # s: an answered or timed-out approval resumes in a few scheduler loops


def port_for_the_server() -> int:
    """A free port (``IMGCLF_TEST_AIRFLOW_PORT`` to choose one): a fixed default collides with
    another copy of this test (a second clone, a CI run, xdist), and then the waits below talk
    to the other copy's server."""
    chosen = os.environ.get("IMGCLF_TEST_AIRFLOW_PORT")
    return int(chosen) if chosen else free_port()


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    except OSError as err:  # not listening yet
        return 0, str(err)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Airflow:
    def __init__(self, base: str, home: Path, data: Path, log: Path):
        self.base, self.home, self.data, self.log = base, home, data, log
        self.token = ""

    def api(self, method: str, path: str, body: Any = None, ok: bool = True,
            token: str | None = None) -> Any:  # fmt: skip
        status, answer = http(method, f"{self.base}/api/v2{path}", body, token or self.token)
        if ok:
            assert 200 <= status < 300, (method, path, status, answer, self.diagnostics())
        return answer if ok else (status, answer)

    def login(self, user: str) -> str | None:
        """A JWT for ``user`` (the simple auth manager's generated password)."""
        pw_file = self.home / "simple_auth_manager_passwords.json.generated"
        try:  # the api-server writes it in place: absent, empty or half-written at first
            password = json.loads(pw_file.read_text()).get(user)
        except (OSError, ValueError):
            return None
        status, answer = http("POST", f"{self.base}/auth/token",
                              {"username": user, "password": password})  # fmt: skip
        return answer["access_token"] if status in (200, 201) else None

    def diagnostics(self) -> str:
        """What a failure needs: the server's log tail and the tail of each task's latest log."""
        out = ["--- standalone log (tail) ---"]
        out.append(self.log.read_text(errors="replace")[-6000:] if self.log.is_file() else "")
        logs = sorted((self.home / "logs").rglob("*.log"), key=lambda f: f.stat().st_mtime)
        for f in logs[-8:]:
            out += [f"--- {f.relative_to(self.home)} (tail) ---",
                    f.read_text(errors="replace")[-2500:]]  # fmt: skip
        return "\n".join(out)

    def wait(self, what: str, check, timeout: float, every: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(every)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")

    def trigger(self, conf: dict) -> str:
        run = self.api("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def state(self, run_id: str) -> str:
        return self.api("GET", f"/dags/{DAG}/dagRuns/{run_id}")["state"]

    def hitl(self, run_id: str) -> dict | None:
        status, answer = self.api(
            "GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails", ok=False
        )
        return answer if status == 200 else None

    def parked(self, run_id: str) -> bool:
        """The scheduler has seen the approve task park (its executor event processed). An
        answer before that is resumed, then failed by the late event of the parked process
        ("state changed externally": Airflow 3.3.2, LocalExecutor); no person is that fast."""
        lines = self.log.read_text(errors="replace").splitlines()
        mark = f"task_id=approve, run_id={run_id},"
        return any(mark in line and "state=awaiting_input" in line for line in lines)

    def asked(self, run_id: str) -> dict | None:
        detail = self.hitl(run_id)
        return detail if detail and self.parked(run_id) else None

    def finished(self, run_id: str) -> str | None:
        state = self.state(run_id)
        return state if state in ("success", "failed") else None

    def task_state(self, run_id: str, task_id: str) -> str | None:
        return self.api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}")["state"]

    def answer(self, run_id: str, option: str, comment: str | None, token: str | None = None):
        return self.api(
            "PATCH", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
            {"chosen_options": [option], "params_input": {"comment": comment}},
            ok=token is None, token=token,
        )  # fmt: skip


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, football, seed_mlflow_store):
    root = tmp_path_factory.mktemp("approval-airflow")
    home, data, log = root / "airflow", seed_mlflow_store(root / "data"), root / "standalone.log"
    home.mkdir()
    port = port_for_the_server()
    base = f"http://127.0.0.1:{port}"
    with GitHubStub(football) as stub:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "IMGCLF_HOME": str(data),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # mallory may use the API (admin role) but is no respondent (IMGCLF_APPROVERS)
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,mallory:admin",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base,
            # the deadline sweep of waiting approvals (15 s by default): the timeout run is short
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # parsed once: the DAG files do not change during the test, and re-parsing them
            # every 30 s (the default) spends the cores the runs need
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW_CONN_GITHUB_DEFAULT": json.dumps({"conn_type": "http", "host": stub.url}),
            "IMGCLF_APPROVERS": "admin",
        }
        out = open(log, "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"], env=env, cwd=root, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        af = Airflow(base, home, data, log)
        try:

            def token():
                if proc.poll() is not None:
                    pytest.fail(f"airflow standalone exited {proc.returncode}\n{af.diagnostics()}")
                return af.login("admin")

            af.token = af.wait("the api-server's token", token, START_TIMEOUT)

            def parsed():
                status, answer = af.api("GET", f"/dags/{DAG}", ok=False)
                return status == 200 and answer

            af.wait("the DAG to be parsed", parsed, START_TIMEOUT)
            af.api("PATCH", f"/dags/{DAG}", {"is_paused": False})
            yield af
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.close()


def _conf(lite0: Path, seed: int, approval: str = "always", **extra) -> dict:
    # evidence off: its Spark job is not what this test is about (tests/dags/test_dag_e2e.py)
    return {"model": str(lite0), "runtime": "openvino", "target_accuracy": 0.0, "seed": seed,
            "min_accuracy": 0.5, "approval": approval, "evidence": False, **extra}  # fmt: skip


def test_approval_through_the_rest_api(airflow, lite0, tmp_path):
    af, s = airflow, settings(airflow.data)
    t0 = time.monotonic()
    # 1: on_change and no champion yet: the rules would make this the champion, so it asks
    first = af.trigger(_conf(lite0, seed=12, approval="on_change"))
    detail = af.wait("run 1 to wait in Required actions", lambda: af.asked(first), RUN_TIMEOUT)
    assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False
    assert "test accuracy" in detail["body"] and "no champion yet" in detail["body"]
    assert f"{af.base}/imgclf/report/{DAG}/" in detail["body"]
    assert [u["id"] for u in detail["assigned_users"]] == ["admin"]
    assert af.state(first) == "running" and registry.champion(s) is None  # nothing yet
    # a user allowed to use the API but not a respondent (IMGCLF_APPROVERS) is refused ...
    mallory = af.wait("mallory's token", lambda: af.login("mallory"), 30)
    status, refused = af.answer(first, "Approve", "let me", token=mallory)
    assert status == 403 and "not a respondent" in str(refused), (status, refused)
    # ... and the task keeps waiting, unanswered
    assert af.hitl(first)["response_received"] is False
    assert af.task_state(first, "approve") == "awaiting_input"
    _screenshot(af, first, tmp_path)
    af.answer(first, "Approve", "looks right")
    assert af.wait("run 1 to end", lambda: af.finished(first), RUN_TIMEOUT) == "success"
    champion = registry.champion(s)
    assert champion is not None and champion["tags"]["approval"] == "approved"
    assert champion["tags"]["approval_by"] == "admin"
    assert champion["tags"]["approval_comment"] == "looks right"
    page = (run_dir(af.data, first) / "report.html").read_text()
    assert "human approval: <b class='pass'>approved</b>" in page and "looks right" in page
    # `evidence: false`, through the scheduler: skipped, and the report says there is no map
    assert af.task_state(first, "evidence") == "skipped"
    assert "its evidence job did not run" in page

    # 1 again: approve cleared and rerun (no Spark job): the candidate is the champion now, so
    # on_change does not ask and the run ends on its own
    verdict = run_dir(af.data, first) / "approval.json"
    af.api("POST", f"/dags/{DAG}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": first, "task_ids": ["approve"],
        "include_downstream": True, "only_failed": False, "reset_dag_runs": True,
    })  # fmt: skip

    def not_asked():
        got = json.loads(verdict.read_text())
        return got if got["asked"] is False and af.finished(first) else None

    again = af.wait("run 1's rerun of approve to end without asking", not_asked, ANSWER_TIMEOUT)
    assert f"identical to version {champion['version']}" in again["summary"], again
    assert registry.champion(s)["version"] == champion["version"]

    # 2: always, rejected -> registered and tagged, the champion stays
    second = af.trigger(_conf(lite0, seed=7))
    af.wait("run 2 to wait in Required actions", lambda: af.asked(second), RUN_TIMEOUT)
    af.answer(second, "Reject", "the kit")
    assert af.wait("run 2 to end", lambda: af.finished(second), RUN_TIMEOUT) == "success"
    assert registry.champion(s)["version"] == champion["version"]
    rejected = registry.versions(s)[-1]
    assert rejected["version"] != champion["version"]
    assert rejected["tags"]["approval"] == "rejected"
    assert rejected["tags"]["approval_by"] == "admin"
    assert rejected["tags"]["approval_comment"] == "the kit"
    m = json.loads((run_dir(af.data, second) / "metrics.json").read_text())
    assert "not promoted: rejected by admin" in m["champion_comparison"]["registry"]

    # 3: no answer in time -> reject (promote is all this needs: not the run's report)
    third = af.trigger(_conf(lite0, seed=3, approval_timeout_hours=0.003))  # ~11 s
    af.wait("run 3 to ask", lambda: af.asked(third), RUN_TIMEOUT)
    done = ("success", "failed", "upstream_failed")
    promoted = af.wait("run 3's promote to end", lambda: af.task_state(third, "promote") in done
                       and af.task_state(third, "promote"), RUN_TIMEOUT)  # fmt: skip
    assert promoted == "success"
    assert registry.champion(s)["version"] == champion["version"]
    timed_out = registry.versions(s)[-1]
    assert timed_out["version"] not in (champion["version"], rejected["version"])
    assert timed_out["tags"]["approval"] == "timed out" and "approval_by" not in timed_out["tags"]
    print(f"approval server test: three runs and a rerun in {time.monotonic() - t0:.0f} s")


def _screenshot(af: Airflow, run_id: str, tmp_path: Path) -> None:
    """The Required-actions page as a person sees it: the Markdown body rendered."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    base = af.base
    url = f"{base}/dags/{DAG}/runs/{run_id}/tasks/approve/required_actions"
    out = Path(os.environ.get("IMGCLF_SCREENSHOT_DIR", tmp_path)) / "approval.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # signed in before the first page runs a script: setting the token from the page
            # itself raced the single-page app's own redirect ("Execution context was
            # destroyed")
            page.context.add_init_script(f"localStorage.setItem('token', {json.dumps(af.token)})")
            page.context.add_cookies([{"name": "_token", "value": af.token, "url": base}])
            for attempt in range(3):  # the single-page app may still be redirecting: once more
                try:
                    page.goto(url, wait_until="networkidle")
                    break
                except PlaywrightError:
                    if attempt == 2:
                        raise
                    page.wait_for_timeout(1000)
            page.get_by_text("Candidate", exact=True).first.wait_for(timeout=30_000)
            # rendered Markdown: headings and a bold figure, not the raw "###" / "**"
            assert page.locator("h3", has_text="What the rules decide").count() >= 1
            assert page.locator("strong", has_text="test accuracy").count() >= 1
            assert page.get_by_text("Comment").count() >= 1  # the answer's form field
            # answerable as it stands: the comment is optional
            assert page.get_by_role("button", name="Approve").is_enabled()
            assert page.get_by_role("button", name="Reject").is_enabled()
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    assert out.stat().st_size > 10_000
