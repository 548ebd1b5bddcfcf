"""The run parameters of ``football_classifier``: defaults and cross-field validation.

The DAG's ``Param`` schemas check each value's type and bounds in the trigger form; this module
checks what a JSON schema cannot (a model file exists, a grid is usable, class names are safe) and
is called by the first task, before any download or Spark job.
"""

from __future__ import annotations

import re
from typing import Any

from imgclf import config
from imgclf.models import POOLINGS, check_model

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_CLASS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

DEFAULTS: dict[str, Any] = {
    "model": config.DEFAULT_MODEL,
    "pooling": "avg",
    "min_accuracy": 0.80,
    "target_accuracy": 0.95,
    "test_fraction": 0.4,
    "seed": 12,
    **config.DEFAULT_LR,
    "tune_grid": config.DEFAULT_GRID,
    "cv_folds": 3,
    "repo": config.DEFAULT_REPO,
    "ref": config.DEFAULT_REF,
    "classes": config.DEFAULT_CLASSES,
    "min_images_per_class": 30,
    "max_regression": 0.0,
}

GRID_KEYS = {"reg_param", "elastic_net_param", "max_iter"}


def _number(name: str, value: Any, lo: float, hi: float, *, lo_open=False, hi_open=False):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}={value!r} is not a number")
    if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name}={value} is outside {left}{lo}, {hi}{right}")
    return value


def validate(params: dict[str, Any]) -> dict[str, Any]:
    """Return the full, checked parameter set (defaults filled in) or raise ``ValueError``.

    Every problem found is listed in one message, each naming the parameter.
    """
    merged = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    problems: list[str] = []

    def check(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            problems.append(str(exc))

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        problems.append(f"unknown parameters {unknown}; known are {sorted(DEFAULTS)}")
    checked = check(check_model, str(merged["model"]))
    if checked:
        merged["model"] = checked
    if merged["pooling"] not in POOLINGS:
        problems.append(f"pooling={merged['pooling']!r} is not one of {list(POOLINGS)}")
    check(_number, "min_accuracy", merged["min_accuracy"], 0, 1)
    check(_number, "target_accuracy", merged["target_accuracy"], 0, 1)
    check(_number, "test_fraction", merged["test_fraction"], 0, 1, lo_open=True, hi_open=True)
    check(_number, "reg_param", merged["reg_param"], 0, 1e6)
    check(_number, "max_regression", merged["max_regression"], 0, 1)
    check(_number, "elastic_net_param", merged["elastic_net_param"], 0, 1)
    for name, lo, hi in (("seed", 0, 2**31 - 1), ("max_iter", 1, 10_000), ("cv_folds", 2, 20)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name}={value!r} is not an integer")
        else:
            check(_number, name, value, lo, hi)
    count = merged["min_images_per_class"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        problems.append(f"min_images_per_class={count!r} must be an integer >= 1")

    grid = merged["tune_grid"]
    if not isinstance(grid, dict) or set(grid) != GRID_KEYS:
        problems.append(f"tune_grid must be an object with exactly the keys {sorted(GRID_KEYS)}")
    else:
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                problems.append(f"tune_grid.{key} must be a non-empty list")
                continue
            hi = 1 if key == "elastic_net_param" else 1e6
            for v in values:
                if key == "max_iter" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    problems.append(f"tune_grid.max_iter value {v!r} must be an integer >= 1")
                else:
                    check(_number, f"tune_grid.{key} value", v, 0, hi)

    if not isinstance(merged["repo"], str) or not _REPO.match(merged["repo"]):
        problems.append(f"repo={merged['repo']!r} is not of the form owner/name")
    if not isinstance(merged["ref"], str) or not merged["ref"].strip():
        problems.append("ref is empty")
    classes = merged["classes"]
    if not isinstance(classes, dict) or len(classes) < 2:
        problems.append("classes must map at least two class names to repository folders")
    else:
        for name, folder in classes.items():
            if not _CLASS.match(str(name)):
                problems.append(f"class name {name!r} must be letters, digits, '_', '.', '-'")
            if not isinstance(folder, str) or not folder.strip("/"):
                problems.append(f"classes.{name} folder {folder!r} is empty")
            elif ".." in folder.split("/"):
                problems.append(f"classes.{name} folder {folder!r} must not contain '..'")
    if problems:
        raise ValueError("invalid run parameters:\n- " + "\n- ".join(problems))
    return merged
