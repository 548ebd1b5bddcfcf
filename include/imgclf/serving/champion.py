"""The model being served: the registry's ``champion``, loaded once, followed as the alias moves.

``Champion.refresh()`` asks the registry which version the alias points at (one query) and,
when it changed, loads that version's pyfunc (``spark_tasks.serving``: no Spark) into memory
from a temporary copy of its artifacts, then swaps it in; requests meanwhile keep the model
they started with. The web app calls it every ``IMGCLF_SERVE_REFRESH`` seconds in the
background, so a promotion or a rollback is served within that delay plus one load, without a
restart. A version that fails to load is logged and the previous one keeps serving.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from imgclf import registry, tracking
from imgclf.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """One loaded version and what the page shows about it."""

    model: Any  # the ServingModel behind the pyfunc
    version: str
    run_id: str | None
    run_url: str | None
    uri: str
    runtime: str
    labels: list[str]
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0

    def info(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "model_run_id": self.run_id,
            "model_run_url": self.run_url,
            "model_uri": self.uri,
            "runtime": self.runtime,
            "labels": self.labels,
        }


class NoChampionError(RuntimeError):
    """The registry has no champion (yet): nothing to serve."""


class Champion:
    """The current champion of ``settings.registered_model``, or a pinned ``version``."""

    def __init__(self, settings: Settings, version: str | None = None):
        self.settings = settings
        self.pinned = version
        self.current: Loaded | None = None
        self.error: str | None = None  # why the last refresh did not load what it found
        self._lock = threading.Lock()  # one refresh at a time

    def target(self) -> dict[str, Any] | None:
        """The version to serve now, as the registry says (``None``: no champion)."""
        if self.pinned:
            return registry.version(self.settings, self.pinned)
        return registry.champion(self.settings)

    def get(self) -> Loaded:
        if self.current is None:
            raise NoChampionError(
                self.error
                or f"no champion in the registry {self.settings.registered_model!r} yet: "
                "train one (make run-offline); it is served as soon as it is promoted"
            )
        return self.current

    def refresh(self) -> bool:
        """Load the alias's version if it is not the one served; ``True`` if it changed."""
        with self._lock:
            try:
                target = self.target()
            except Exception as exc:  # registry unreachable or version gone: keep serving
                self.error = f"registry lookup failed: {exc}"
                log.warning("%s", self.error)
                return False
            if target is None:
                return False
            if self.current is not None and self.current.version == target["version"]:
                return False
            try:
                loaded = self._load(target)
            except Exception as exc:
                self.error = f"version {target['version']} failed to load: {exc}"
                log.exception("version %s failed to load; still serving %s", target["version"],
                              self.current.version if self.current else None)  # fmt: skip
                return False
            previous, self.current, self.error = self.current, loaded, None
            log.warning(
                "serving version %s (was %s), loaded in %.1f s",
                loaded.version, previous.version if previous else None, loaded.load_seconds,
            )  # fmt: skip
            return True

    def _load(self, target: dict[str, Any]) -> Loaded:
        import mlflow.pyfunc

        started = time.perf_counter()
        uri = f"models:/{self.settings.registered_model}/{target['version']}"
        # the artifacts are read into memory and the copy removed: nothing accumulates on disk
        # as versions come and go, and nothing outside the model version is read
        with (
            tempfile.TemporaryDirectory(prefix="imgclf-serve-") as tmp,
            tracking._fluent(self.settings),
        ):
            pyfunc = mlflow.pyfunc.load_model(uri, dst_path=tmp)
        model = pyfunc.get_raw_model()
        if not hasattr(model, "predict_bytes"):
            raise TypeError(
                f"{uri} has no serving flavor (logged before it existed): retrain to serve it"
            )
        run_id = target.get("run_id")
        run_url = None
        if run_id:
            experiment = tracking.client(self.settings).get_run(run_id).info.experiment_id
            run_url = tracking.run_url(self.settings, experiment, run_id)
        return Loaded(
            model=model,
            version=str(target["version"]),
            run_id=run_id,
            run_url=run_url,
            uri=uri,
            runtime=model.conf["runtime"],
            labels=list(model.labels),
            load_seconds=round(time.perf_counter() - started, 2),
        )
