"""The run parameters of ``football_classifier``: ONE JSON schema, and the cross-field checks.

``SCHEMA`` is the single definition of every run parameter: type, bounds, default, title,
description and form section. Everything else derives from it: the DAGs' ``Param``s
(``airflow_params``), the trigger form's labels and sections, ``validate`` (``jsonschema``), and
command-line options of the same name (``add_argument``). Only what a schema cannot express is
written by hand below: a model file is a Keras archive and a named model's weights can be had,
the split leaves enough training images for the folds, class names and folders are safe and
distinct. ``validate`` returns the normalised values, which flow downstream unchanged.
One job in one file, over 400 lines: the one schema, and the cross-field checks that must sit
beside it.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from imgclf.models import APPLICATIONS, FACE_MODELS, POOLINGS, RUNTIMES, check_model
from imgclf.names import check_spark_name
from imgclf.settings import (
    DEFAULT_CLASSES,
    DEFAULT_GRID,
    DEFAULT_LR,
    DEFAULT_MODEL,
    DEFAULT_REF,
    DEFAULT_REPO,
)
from imgclf.split import holdout_count

_CLASS_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
CLASS_NAME_MAX = 64
GRID_KEYS = ("reg_param", "elastic_net_param", "max_iter")
_LR_BOUNDS = {
    "reg_param": {"type": "number", "minimum": 0, "maximum": 1e6},
    "elastic_net_param": {"type": "number", "minimum": 0, "maximum": 1},
    "max_iter": {"type": "integer", "minimum": 1, "maximum": 10_000},
}

MODEL, DATA, SPLIT, LR, TUNING, GATES, CHECKS = (
    "Model", "Data from GitHub", "Split", "Logistic regression (baseline)", "Tuning branch",
    "Gates and promotion", "Data checks",
)  # fmt: skip
CHECK_MODES = ["warn", "fail", "off"]  # imgclf.datachecks.MODES
APPROVAL_MODES = ["auto", "on_change", "always"]  # imgclf.approval.MODES

PROPERTIES: dict[str, dict[str, Any]] = {
    "model": {
        "type": "string", "minLength": 1, "default": DEFAULT_MODEL, "section": MODEL,
        "title": "Pretrained CNN",
        "description": "A keras.applications name (ImageNet weights), 'dlib-face' (a "
        "face-identity embedding: the right features for telling two players apart; "
        "'dlib-face+<CNN>' adds that CNN's features alongside) or an absolute path to a "
        ".keras model file.",
        "examples": [*sorted(APPLICATIONS), *FACE_MODELS],
    },
    "pooling": {
        "type": "string", "enum": list(POOLINGS), "default": "avg", "section": MODEL,
        "title": "Pooling", "description": "How the CNN's feature maps become a vector.",
    },
    "runtime": {
        "type": "string", "enum": list(RUNTIMES), "default": RUNTIMES[0], "section": MODEL,
        "title": "Inference runtime",
        "description": "Where the CNN runs: 'tensorflow'; 'openvino' (the same model as "
        "OpenVINO IR on the CPU, f32: features within 1e-4 of TensorFlow's, faster); "
        "'openvino-bf16' (reduced precision: faster again, features further from "
        "TensorFlow's). Each runtime's features are stored apart.",
    },
    "repo": {
        "type": "string", "pattern": r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", "maxLength": 200,
        "default": DEFAULT_REPO, "section": DATA,
        "title": "GitHub repository", "description": "owner/name of the repository.",
    },
    "ref": {
        "type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^\s\x00-\x1f]+$",
        "default": DEFAULT_REF, "section": DATA,
        "title": "Branch, tag or commit", "description": "The git ref to read the folders at.",
    },
    "classes": {
        "type": "object", "minProperties": 2,
        "propertyNames": {"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "maxLength": 64},
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 500},
        "default": DEFAULT_CLASSES, "section": DATA,
        "title": "Classes", "description": "Class name -> image folder in the repository.",
    },
    "min_images_per_class": {
        "type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 30, "section": DATA,
        "title": "Minimum images per class",
        "description": "A listing with fewer images in a class fails the run and changes "
        "nothing locally.",
    },
    "test_fraction": {
        "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.4,
        "section": SPLIT, "title": "Test fraction",
        "description": "Share of each class held out for test (0.4: 18 train + 12 test).",
    },
    "seed": {
        "type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 12, "section": SPLIT,
        "title": "Split seed", "description": "Seed of the deterministic stratified split.",
    },
    "max_iter": {
        **_LR_BOUNDS["max_iter"], "default": DEFAULT_LR["max_iter"], "section": LR,
        "title": "maxIter", "description": "Baseline LogisticRegression maxIter (reference: 30).",
    },
    "reg_param": {
        **_LR_BOUNDS["reg_param"], "default": DEFAULT_LR["reg_param"], "section": LR,
        "title": "regParam", "description": "Baseline LogisticRegression regParam.",
    },
    "elastic_net_param": {
        **_LR_BOUNDS["elastic_net_param"], "default": DEFAULT_LR["elastic_net_param"],
        "section": LR, "title": "elasticNetParam",
        "description": "Baseline LogisticRegression elasticNetParam (0 = L2, 1 = L1).",
    },
    "target_accuracy": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.95, "section": TUNING,
        "title": "Target accuracy",
        "description": "A baseline at or above this test accuracy (0..1) skips tuning.",
    },
    "tune_grid": {
        "type": "object", "default": DEFAULT_GRID, "section": TUNING,
        "title": "Tuning grid",
        "description": "LogisticRegression params searched by cross-validation on the "
        "training split only.",
        "properties": {
            k: {"type": "array", "minItems": 1, "maxItems": 50, "items": _LR_BOUNDS[k]}
            for k in GRID_KEYS
        },
        "required": list(GRID_KEYS), "additionalProperties": False,
    },
    "cv_folds": {
        "type": "integer", "minimum": 2, "maximum": 20, "default": 3, "section": TUNING,
        "title": "Cross-validation folds", "description": "Folds in the tuning branch.",
    },
    "min_accuracy": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.80, "section": GATES,
        "title": "Minimum accuracy",
        "description": "The run fails below this test accuracy (0..1); nothing is promoted.",
    },
    "max_regression": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.0, "section": GATES,
        "title": "Maximum regression",
        "description": "Promote only if the candidate is not worse than the champion by more "
        "than this (test accuracy, on the same test images).",
    },
    "approval": {
        "type": "string", "enum": APPROVAL_MODES, "default": "auto", "section": GATES,
        "title": "Human approval",
        "description": "Who decides the promotion: 'auto' (the rules above), 'on_change' (a "
        "person approves when the rules would change the champion) or 'always' (a person "
        "approves every promotion). Reject, or no answer in time, promotes nothing.",
    },
    "approval_timeout_hours": {
        "type": "number", "exclusiveMinimum": 0, "maximum": 720, "default": 24.0,
        "section": GATES, "title": "Approval timeout (hours)",
        "description": "How long a run waits for the person's answer; none in time counts as "
        "reject.",
    },
    "evidence": {
        "type": "boolean", "default": True, "section": GATES, "title": "Evidence maps",
        "description": "Run the evidence job: what the gated model looks at (class-evidence "
        "maps, face boxes, the face-evidence share) for the report and the person approving. "
        "Off saves its Spark job; the run's outcome never depends on it.",
    },
    "near_duplicate_similarity": {
        "type": "number", "minimum": 0.5, "maximum": 1, "default": 0.92, "section": CHECKS,
        "title": "Near-duplicate similarity",
        "description": "Two images whose CNN features have at least this cosine similarity "
        "are near-duplicates (a crop, a re-encode, the same photo twice).",
    },
    "leakage_check": {
        "type": "string", "enum": CHECK_MODES, "default": "warn", "section": CHECKS,
        "title": "Train/test leakage",
        "description": "When more than max_leakage of the test images have a near-duplicate "
        "in training: 'warn' (recorded), 'fail' (the run stops before training) or 'off'.",
    },
    "max_leakage": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.0, "section": CHECKS,
        "title": "Maximum leakage",
        "description": "Share of test images (0..1) that may have a near-duplicate in training.",
    },
    "group_near_duplicates": {
        "type": "boolean", "default": False, "section": CHECKS,
        "title": "Keep near-duplicates together",
        "description": "Split groups of near-duplicates as one (a test image's near-copy is "
        "never in training); still deterministic.",
    },
    "label_conflict_check": {
        "type": "string", "enum": CHECK_MODES, "default": "warn", "section": CHECKS,
        "title": "Label conflicts",
        "description": "Identical or near-duplicate images in two classes: 'warn', 'fail' "
        "(before training) or 'off'. The files are named either way.",
    },
    "min_class_ratio": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.5, "section": CHECKS,
        "title": "Minimum class ratio",
        "description": "A warning when the smallest class has fewer than this share of the "
        "largest's images.",
    },
    "max_drift": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.5, "section": CHECKS,
        "title": "Maximum drift",
        "description": "A warning when more than this share of the images are farther from "
        "the champion's training set than 95 % of that set is from itself.",
    },
}  # fmt: skip

# Keys that are the form's, not JSON schema's: kept out of the schema validated against.
_FORM_KEYS = ("section", "title", "description", "examples", "default")
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        name: {k: v for k, v in prop.items() if k not in ("section", "examples")}
        for name, prop in PROPERTIES.items()
    },
}
DEFAULTS: dict[str, Any] = {name: prop["default"] for name, prop in PROPERTIES.items()}


# What Airflow would check itself when a run is triggered, and answer with jsonschema's whole
# error (schema and instance, dozens of lines): left to ``validate`` (the first task), which
# names the parameter and the bound in one line. The form shows the bounds in the description
# and an ``enum`` as a drop-down of ``examples``.
_CHECKED_BY_VALIDATE = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "minLength",
    "maxLength", "minProperties", "propertyNames", "additionalProperties", "properties",
    "required", "minItems", "maxItems", "items", "enum",
)  # fmt: skip


def bounds_text(prop: dict[str, Any]) -> str:
    """``">= 0, <= 1"``: a parameter's numeric bounds, as the form and the README show them."""
    return ", ".join(
        f"{label} {prop[key]}"
        for key, label in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                           ("exclusiveMaximum", "<"))
        if key in prop
    )  # fmt: skip


def airflow_params(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Keyword arguments for ``airflow.sdk.Param`` per parameter (``Param(**kwargs)``): the
    schema's type, default, title, section and description (with its bounds); the bounds
    themselves are ``validate``'s, so that a bad value fails the first task with one line."""
    import copy

    out = {}
    for name in names or list(PROPERTIES):
        spec = {k: copy.deepcopy(v) for k, v in PROPERTIES[name].items()
                if k not in _CHECKED_BY_VALIDATE}  # fmt: skip
        if "enum" in PROPERTIES[name]:
            spec["examples"] = list(PROPERTIES[name]["enum"])
        if bounds := bounds_text(PROPERTIES[name]):
            spec["description"] += f" ({bounds})"
        out[name] = spec
    return out


def markdown_table() -> str:
    """The parameters as the README's table (a test keeps the README equal to this)."""
    import json

    rows = ["| section | param | title | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, prop in PROPERTIES.items():
        default = (
            json.dumps(prop["default"]) if isinstance(prop["default"], dict) else prop["default"]
        )
        bounds = bounds_text(prop)
        meaning = prop["description"] + (f" ({bounds})" if bounds else "")
        rows.append(f"| {prop['section']} | `{name}` | {prop['title']} | `{default}` | {meaning} |")
    return "\n".join(rows)


def model_argument(value: str) -> str:
    """``--model`` on a command line: like the DAG's, but a relative model file is taken from
    the current folder (the jobs run elsewhere), then checked (``ArgumentTypeError``)."""
    from pathlib import Path

    from imgclf.models import ModelSpec

    try:
        return str(ModelSpec.parse(value, relative_to=Path.cwd()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_argument(parser: argparse.ArgumentParser, name: str, **overrides: Any) -> None:
    """``--<name>`` on a command line, with the schema's type, default, choices and help."""
    prop = PROPERTIES[name]
    kind = {"integer": int, "number": float, "string": str}[prop["type"]]
    if name == "model":
        kind = model_argument  # type: ignore[assignment]
    options: dict[str, Any] = {
        "type": kind,
        "default": prop["default"],
        "help": f"{prop['description']} (default: {prop['default']})",
    }
    if "enum" in prop:
        options["choices"] = prop["enum"]
    options.update(overrides)
    parser.add_argument("--" + name.replace("_", "-"), dest=name, **options)


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
    ``.`` nor ``..`` nor a hidden folder) nor ``_`` (Spark skips such folders: ``imgclf.names``).
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
    check_spark_name(name, "class name")  # a folder every Spark reader must list (`_x`)
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


def _schema_problems(merged: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Every schema violation as ``"<param>=<value>: <why>"``, and the parameters with one."""
    from jsonschema import Draft202012Validator

    problems, bad = [], set()
    validator = Draft202012Validator(SCHEMA)
    for error in sorted(validator.iter_errors(merged), key=lambda e: list(map(str, e.path))):
        path = ".".join(map(str, error.absolute_path))
        top = str(error.absolute_path[0]) if error.absolute_path else ""
        if top:
            bad.add(top)
            value = repr(error.instance)
            value = value if len(value) <= 60 else value[:56] + "..."
            problems.append(f"{path}={value}: {error.message}")
        else:
            problems.append(error.message)
    return problems, bad


def validate(params: dict[str, Any], *, check_weights: bool = True) -> dict[str, Any]:
    """Return the full, checked parameter set (defaults filled in) or raise ``ValueError``.

    First ``SCHEMA`` (types, bounds, enums, patterns), then the cross-field checks on values the
    schema passed. Every problem is listed in one message, each naming the parameter.
    ``model`` comes back normalised (``~`` expanded, canonical form). ``check_weights=False``
    skips the one check that may use the network (a named model's ImageNet weights).
    """
    merged = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    unknown = sorted(set(params) - set(PROPERTIES))
    problems, bad = _schema_problems(merged)
    if unknown:
        problems = [f"unknown parameters {unknown}; known are {sorted(PROPERTIES)}"] + [
            p for p in problems if "Additional properties" not in p
        ]
    if "model" not in bad:
        try:
            merged["model"] = check_model(merged["model"], check_weights=check_weights)
        except ValueError as exc:
            problems.append(str(exc))
    if not {"min_images_per_class", "test_fraction", "cv_folds"} & bad:
        split = _split_problem(
            merged["min_images_per_class"], merged["test_fraction"], merged["cv_folds"]
        )
        if split:
            problems.append(split)
    if isinstance(merged["classes"], dict):  # the hand check names the class and says why
        named = _class_problems(merged["classes"])
        if named:
            problems = [p for p in problems if not p.startswith("classes")] + named
    if len(problems) == 1:
        raise ValueError(f"invalid run parameters: {problems[0]}")
    if problems:
        raise ValueError("invalid run parameters:\n- " + "\n- ".join(problems))
    return merged


# --- football_classifier_predict's form: the same idiom (title, section, description) ------
PREDICT_INPUT, PREDICT_OUTPUT = "Images to score", "Model and output"
PREDICT_PROPERTIES: dict[str, dict[str, Any]] = {
    "images_dir": {
        "type": "string", "minLength": 1, "default": "", "section": PREDICT_INPUT,
        "title": "Images folder",
        "description": "Absolute path of a folder of images on the workers (any depth). "
        "Files Spark's listing would skip (names starting with '_' or '.') are read too.",
    },
    "version": {
        "type": "string", "pattern": r"^(champion|[1-9][0-9]{0,8})$", "default": "champion",
        "section": PREDICT_OUTPUT, "title": "Model version",
        "description": "'champion' (the MLflow registry's alias) or a model version number.",
    },
    "out": {
        # null allowed: the form does not mark it required; empty means the default path
        "type": ["null", "string"], "default": None, "section": PREDICT_OUTPUT,
        "title": "Output CSV",
        "description": "CSV path; empty: IMGCLF_HOME/predictions/<run_id>.csv.",
    },
}  # fmt: skip


def predict_airflow_params() -> dict[str, dict[str, Any]]:
    """``Param(**kwargs)`` per parameter of ``football_classifier_predict`` (its form)."""
    import copy

    return {name: copy.deepcopy(prop) for name, prop in PREDICT_PROPERTIES.items()}
