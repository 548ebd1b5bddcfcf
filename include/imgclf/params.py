"""The run parameters of ``football_classifier``: defaults and cross-field validation.

The DAG's ``Param`` schemas check each value's type and bounds in the trigger form; this module
checks what a JSON schema cannot (a model file is a Keras archive, a named model's weights can be
had, a grid is usable, the split leaves enough images for cross-validation, class names are safe)
and is called by the first task, before any download or Spark job.
"""

from __future__ import annotations

import re
from typing import Any

from imgclf import config
from imgclf.models import POOLINGS, check_model
from imgclf.split import holdout_count

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_CLASS_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
CLASS_NAME_MAX = 64

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


def check_class_name(name: Any) -> str:
    """Return ``name`` if it is one safe path component, else raise ``ValueError`` naming it.

    A class name becomes a folder (``raw/<name>/``) and a label: ASCII letters, digits, ``_``,
    ``.``, ``-``; at most ``CLASS_NAME_MAX`` characters; not starting with ``.`` (so neither
    ``.`` nor ``..`` nor a hidden folder).
    """
    if not isinstance(name, str):
        raise ValueError(f"class name {name!r} is not a string")
    if not name:
        raise ValueError("class name '' is empty")
    if not _CLASS_CHARS.fullmatch(name):
        raise ValueError(
            f"class name {name!r} must be letters, digits, '_', '.', '-' "
            "(one folder name: no '/', spaces or control characters)"
        )
    if name.startswith("."):
        raise ValueError(f"class name {name!r} must not start with '.'")
    if len(name) > CLASS_NAME_MAX:
        raise ValueError(f"class name {name!r} is longer than {CLASS_NAME_MAX} characters")
    return name


def check_class_folder(name: str, folder: Any) -> str:
    """Return ``folder`` if it is a plain repository-relative folder path, else raise."""
    what = f"classes.{name} folder {folder!r}"
    if not isinstance(folder, str):
        raise ValueError(f"{what} is not a string")
    if not folder.strip("/"):
        raise ValueError(f"{what} is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in folder):
        raise ValueError(f"{what} contains a control character")
    if "\\" in folder:
        raise ValueError(f"{what} must separate folders with '/', not a backslash")
    if folder.startswith("/"):
        raise ValueError(f"{what} must be relative to the repository root (no leading '/')")
    parts = folder.removesuffix("/").split("/")
    if ".." in parts:
        raise ValueError(f"{what} must not contain '..'")
    if "." in parts or "" in parts:
        raise ValueError(f"{what} must not contain empty or '.' components")
    return folder


def _class_problems(classes: Any) -> list[str]:
    if not isinstance(classes, dict) or not classes:
        return ["classes must map class names to repository folders"]
    problems: list[str] = []
    for name, folder in classes.items():
        for fn, args in ((check_class_name, (name,)), (check_class_folder, (name, folder))):
            try:
                fn(*args)
            except ValueError as exc:
                problems.append(str(exc))
    by_case: dict[str, list[str]] = {}
    by_folder: dict[str, list[str]] = {}
    for name, folder in classes.items():
        if isinstance(name, str):
            by_case.setdefault(name.lower(), []).append(name)
            if isinstance(folder, str):
                by_folder.setdefault(folder.removesuffix("/"), []).append(name)
    for names in by_case.values():
        if len(names) > 1:
            problems.append(
                f"class names {' and '.join(map(repr, names))} differ only in case "
                "(one folder on a case-insensitive file system)"
            )
    for folder, names in by_folder.items():
        if len(names) > 1:
            problems.append(
                f"classes {' and '.join(map(repr, names))} have the same folder {folder!r}"
            )
    return problems


def check_classes(classes: Any) -> dict[str, str]:
    """Return ``classes`` if every name and folder is safe and no two names clash, else raise.

    ``ValueError`` lists every problem, each naming the class and the bad value.
    """
    problems = _class_problems(classes)
    if problems:
        raise ValueError("; ".join(problems))
    return dict(classes)


def training_images(n: int, test_fraction: float) -> int:
    """Training images of a class of ``n`` under ``split.stratified_split``.

    Non-decreasing in ``n`` (``n - round(n*f)`` grows by 0 or 1 per image since ``f < 1``, and
    the at-least-one-each-side clamp keeps that), so the smallest class admitted by the download,
    ``min_images_per_class``, is the worst case.
    """
    return n - holdout_count(n, test_fraction)


def _split_problem(count: int, test_fraction: float, folds: int) -> str | None:
    train = training_images(count, test_fraction)
    if train >= folds:
        return None
    need = next(
        (
            n
            for n in range(count + 1, count + 100_000)
            if training_images(n, test_fraction) >= folds
        ),
        None,
    )
    hint = f" (min_images_per_class >= {need} would do)" if need else ""
    return (
        f"min_images_per_class={count} with test_fraction={test_fraction} leaves {train} "
        f"training images per class, fewer than cv_folds={folds}{hint}"
    )


def validate(params: dict[str, Any], *, check_weights: bool = True) -> dict[str, Any]:
    """Return the full, checked parameter set (defaults filled in) or raise ``ValueError``.

    Every problem found is listed in one message, each naming the parameter. ``model`` comes
    back normalised (``~`` expanded). ``check_weights=False`` skips the one check that may use
    the network: a named model's ImageNet weights in the Keras cache, or a HEAD request to them.
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
    checked = check(check_model, str(merged["model"]), check_weights=check_weights)
    if checked:
        merged["model"] = checked
    if merged["pooling"] not in POOLINGS:
        problems.append(f"pooling={merged['pooling']!r} is not one of {list(POOLINGS)}")
    check(_number, "min_accuracy", merged["min_accuracy"], 0, 1)
    check(_number, "target_accuracy", merged["target_accuracy"], 0, 1)
    fraction_ok = (
        check(_number, "test_fraction", merged["test_fraction"], 0, 1, lo_open=True, hi_open=True)
        is not None
    )
    check(_number, "reg_param", merged["reg_param"], 0, 1e6)
    check(_number, "max_regression", merged["max_regression"], 0, 1)
    check(_number, "elastic_net_param", merged["elastic_net_param"], 0, 1)
    integers_ok = {}
    for name, lo, hi in (("seed", 0, 2**31 - 1), ("max_iter", 1, 10_000), ("cv_folds", 2, 20)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name}={value!r} is not an integer")
        else:
            integers_ok[name] = check(_number, name, value, lo, hi) is not None
    count = merged["min_images_per_class"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        problems.append(f"min_images_per_class={count!r} must be an integer >= 1")
    elif fraction_ok and integers_ok.get("cv_folds"):
        split = _split_problem(count, merged["test_fraction"], merged["cv_folds"])
        if split:
            problems.append(split)

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
        problems.extend(_class_problems(classes))
    if problems:
        raise ValueError("invalid run parameters:\n- " + "\n- ".join(problems))
    return merged
