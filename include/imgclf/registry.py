"""The MLflow Model Registry: the versions, and the alias ``champion`` that says which serves.

The decisions stay ours (``imgclf.decisions``): a gated candidate becomes a model version with its
champion/challenger decision as tags; promotion moves the alias; every move is appended to the
registered model's ``champion_history`` tag, so ``rollback`` goes back one step. Moves are
serialised by a lock file beside the store (one machine; a shared server needs one writer).
MLflow is imported lazily: the DAG files import this module at parse time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from imgclf.settings import Settings
from imgclf.tracking import client, now_iso, quote, readable_time

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
HISTORY_TAG = "champion_history"
# A version's tags while (and only while) the alias points at it; history stays in the
# registered model's HISTORY_TAG and in each version's ``champion_until``.
CHAMPION_TAGS = ("champion_since", "champion_reason")


def _locked(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """One alias move at a time (read-modify-write of the alias and its history)."""
    from imgclf.files import locked

    return locked(settings.home / "registry.lock")


def _ensure_model(mlflow: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # created meanwhile
            mlflow.create_registered_model(name, description="Messi vs Ronaldo (imgclf)")


def candidate_key(metrics: dict[str, Any], code: str) -> str:
    """What makes two candidates the same model: dataset, featurizer, params and code."""
    parts = {
        "dataset": (metrics.get("dataset") or {}).get("fingerprint"),
        "featurizer": metrics.get("featurizer"),
        "params": metrics.get("params"),
        "code": code,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def champion(settings: Settings) -> dict[str, Any] | None:
    """The version the alias points at (``version``, ``run_id``, ``tags``), or ``None``."""
    from mlflow.exceptions import MlflowException

    mlflow = client(settings)
    try:
        mv = mlflow.get_model_version_by_alias(settings.registered_model, CHAMPION)
    except MlflowException:
        return None
    return _version(mv)


def _version(mv: Any) -> dict[str, Any]:
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "source": mv.source,
        "tags": dict(mv.tags or {}),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "created": mv.creation_timestamp,
    }


def versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version of the registered model, oldest first."""
    mlflow = client(settings)
    found = mlflow.search_model_versions(f"name = '{quote(settings.registered_model)}'")
    return sorted((_version(mv) for mv in found), key=lambda v: int(v["version"]))


def version(settings: Settings, which: str) -> dict[str, Any]:
    """``champion`` or a version number; ``KeyError`` naming what is missing."""
    if which in ("", CHAMPION):
        found = champion(settings)
        if found is None:
            raise KeyError(f"no champion in the registry {settings.registered_model!r}: train one")
        return found
    for v in versions(settings):
        if v["version"] == which.lstrip("v").lstrip("0") or v["version"] == which:
            return v
    raise KeyError(f"no version {which!r} of the registered model {settings.registered_model!r}")


def model_uri(settings: Settings, which: str) -> str:
    """``models:/<name>@champion`` or ``models:/<name>/<version>``."""
    if which in ("", CHAMPION):
        version(settings, CHAMPION)  # exists
        return f"models:/{settings.registered_model}@{CHAMPION}"
    return f"models:/{settings.registered_model}/{version(settings, which)['version']}"


def register(
    settings: Settings, source: str, mlflow_run_id: str | None, key: str, tags: dict[str, str]
) -> tuple[str | None, str | None]:
    """A new version of ``source`` (a logged model's URI), unless one with the same candidate
    ``key`` exists: returns ``(new version, None)`` or ``(None, the identical version)``."""
    mlflow = client(settings)
    with _locked(settings):
        _ensure_model(mlflow, settings.registered_model)
        for v in versions(settings):
            if v["tags"].get("candidate_key") == key:
                return None, v["version"]
        mv = mlflow.create_model_version(
            settings.registered_model,
            source,
            run_id=mlflow_run_id,
            tags={**tags, "candidate_key": key},
        )
        return str(mv.version), None


def _history(mlflow: MlflowClient, name: str) -> list[str]:
    raw = (mlflow.get_registered_model(name).tags or {}).get(HISTORY_TAG, "[]")
    try:
        return [str(v) for v in json.loads(raw)]
    except ValueError:
        return []


def _move_alias(
    mlflow: MlflowClient, name: str, target: str, reason: str, previous: dict[str, Any] | None
) -> None:
    """Point ``champion`` at ``target``. The version losing the alias keeps what it was
    (``champion_until``), not a claim that it still is (its ``champion_*`` tags go)."""
    mlflow.set_registered_model_alias(name, CHAMPION, target)
    mlflow.set_model_version_tag(name, target, "champion_since", now_iso())
    mlflow.set_model_version_tag(name, target, "champion_reason", reason[:4000])
    if previous and previous["version"] != target:
        mlflow.set_model_version_tag(name, target, "previous_champion", previous["version"])
        for tag in CHAMPION_TAGS:
            if tag in previous["tags"]:
                mlflow.delete_model_version_tag(name, previous["version"], tag)
        was = previous["tags"].get("champion_since")
        until = f"{readable_time(was)} .. {now_iso()}" if was else now_iso()
        mlflow.set_model_version_tag(
            name, previous["version"], "champion_until", f"{until}: {reason}"[:4000]
        )


def promote(settings: Settings, which: str, reason: str) -> str:
    """Move ``champion`` to version ``which``; the move is appended to the history."""
    mlflow = client(settings)
    with _locked(settings):
        target = version(settings, which)["version"]
        name = settings.registered_model
        history = _history(mlflow, name)
        previous = champion(settings)
        _move_alias(mlflow, name, target, reason, previous)
        mlflow.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*history, target]))
        log.info("champion: version %s (%s)", target, reason)
        return target


def rollback(settings: Settings) -> str:
    """Point ``champion`` back at the version before the current one; return it."""
    mlflow = client(settings)
    with _locked(settings):
        name = settings.registered_model
        history = _history(mlflow, name)
        current = champion(settings)
        while history and current and history[-1] == current["version"]:
            history.pop()
        if not history:
            raise KeyError("no earlier champion to roll back to")
        target = history[-1]
        was = current["version"] if current else "none"
        _move_alias(mlflow, name, target, f"rolled back from version {was}", current)
        mlflow.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        log.info("champion rolled back to version %s", target)
        return target
