import itertools
import re
import zipfile

import pytest

import imgclf.models as models
from imgclf.params import (
    CLASS_NAME_MAX,
    DEFAULTS,
    check_class_name,
    check_classes,
    training_images,
    validate,
)
from imgclf.split import stratified_split


def keras_archive(path):
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("metadata.json", "config.json", "model.weights.h5"):
            zf.writestr(name, "{}")
    return path


@pytest.fixture(autouse=True)
def weights_checked(monkeypatch):
    """No network here: record which models' weights ``validate`` asked about."""
    asked = []
    monkeypatch.setattr(models, "require_weights", lambda spec: asked.append(spec.name) or "ok")
    return asked


def test_defaults_are_valid_and_match_the_reference_run(weights_checked):
    p = validate({})
    assert p["model"] == "InceptionV3"
    assert (p["test_fraction"], p["seed"], p["max_iter"]) == (0.4, 12, 30)
    grid = p["tune_grid"]
    assert 0.05 in grid["reg_param"] and 0.3 in grid["elastic_net_param"]
    assert 15 in grid["max_iter"]
    assert weights_checked == ["InceptionV3"]


def test_the_weights_check_can_be_skipped_and_covers_the_face_fallback(weights_checked):
    validate({}, check_weights=False)
    assert weights_checked == []
    validate({"model": "dlib-face+ResNet50"})
    validate({"model": "dlib-face"})
    assert weights_checked == ["ResNet50"]


def test_missing_weights_are_one_of_the_listed_problems(monkeypatch):
    def refuse(spec):
        raise ValueError(f"model {spec.name!r}: its ImageNet weights are not in the Keras cache")

    monkeypatch.setattr(models, "require_weights", refuse)
    with pytest.raises(ValueError, match="invalid run parameters") as err:
        validate({"model": "Xception", "seed": -1})
    assert "- model 'Xception': its ImageNet weights are not in the Keras cache" in str(err.value)
    assert "seed=-1" in str(err.value)


def test_model_file_must_exist_be_absolute_and_end_in_keras(tmp_path):
    good = keras_archive(tmp_path / "m.keras")
    assert validate({"model": str(good)})["model"] == str(good)
    (tmp_path / "x.keras").write_bytes(b"x")
    for bad, why in (
        (str(tmp_path / "missing.keras"), "does not exist"),
        ("rel/m.keras", "absolute"),
        (str(tmp_path / "m.h5"), ".keras"),
        (str(tmp_path / "x.keras"), r"not a Keras 3 \.keras archive \(not a zip file\)"),
    ):
        with pytest.raises(ValueError, match=why):
            validate({"model": bad})


def test_a_home_relative_model_file_comes_back_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    keras_archive(tmp_path / "m.keras")
    assert validate({"model": "~/m.keras"})["model"] == str(tmp_path / "m.keras")
    assert validate({"model": "dlib-face+~/m.keras"})["model"] == (
        f"dlib-face+{tmp_path / 'm.keras'}"
    )


def test_unknown_model_name_suggests_the_right_case():
    with pytest.raises(
        ValueError, match=r"unknown model 'inceptionv3'.*did you mean 'InceptionV3'"
    ):
        validate({"model": "inceptionv3"})


def test_all_problems_are_listed_each_naming_its_parameter():
    with pytest.raises(ValueError, match="invalid run parameters") as err:
        validate(
            {
                "min_accuracy": 1.5,
                "test_fraction": 1.0,
                "seed": "x",
                "repo": "nope",
                "classes": {"messi": "a"},
                "bogus": 1,
            }
        )
    text = str(err.value)
    for name in ("min_accuracy", "test_fraction", "seed", "repo", "classes", "bogus"):
        assert name in text


def test_the_runtime_is_a_choice_tensorflow_by_default():
    assert validate({}, check_weights=False)["runtime"] == "tensorflow"
    assert validate({"runtime": "openvino"}, check_weights=False)["runtime"] == "openvino"
    with pytest.raises(ValueError, match="runtime='onnx': 'onnx' is not one of"):
        validate({"runtime": "onnx"}, check_weights=False)


def test_bad_grids_are_rejected():
    with pytest.raises(ValueError, match="tune_grid"):
        validate({"tune_grid": {"reg_param": [0.1]}})
    with pytest.raises(ValueError, match=r"tune_grid\.max_iter"):
        validate({"tune_grid": {**DEFAULTS["tune_grid"], "max_iter": [0]}})
    with pytest.raises(ValueError, match=r"tune_grid\.elastic_net_param"):
        validate({"tune_grid": {**DEFAULTS["tune_grid"], "elastic_net_param": [2.0]}})


# --- the split must leave at least cv_folds training images in the smallest class -------------


def test_too_few_training_images_for_the_folds_are_refused_with_the_numbers():
    with pytest.raises(ValueError, match="invalid run parameters") as err:
        validate({"min_images_per_class": 4, "test_fraction": 0.4, "cv_folds": 3})
    assert (
        "min_images_per_class=4 with test_fraction=0.4 leaves 2 training images per class, "
        "fewer than cv_folds=3 (min_images_per_class >= 5 would do)"
    ) in str(err.value)
    with pytest.raises(ValueError, match=r"leaves 1 training images per class.*cv_folds=2"):
        validate({"min_images_per_class": 2, "test_fraction": 0.1, "cv_folds": 2})
    with pytest.raises(ValueError, match=r"leaves 18 training images.*fewer than cv_folds=20"):
        validate({"cv_folds": 20})  # 30 images, 12 held out


@pytest.mark.parametrize(
    ("count", "fraction", "folds"),
    [(5, 0.4, 3), (3, 0.1, 2), (8, 0.25, 2), (30, 0.4, 18), (1000, 0.9, 20)],
)
def test_enough_training_images_pass_and_the_real_split_agrees(count, fraction, folds):
    validate({"min_images_per_class": count, "test_fraction": fraction, "cv_folds": folds})
    for n in (count, count + 1, count + 7):  # the smallest admitted class and bigger ones
        items = [(f"{label}{i}", label) for label in ("a", "b") for i in range(n)]
        assert stratified_split(items, fraction, seed=1, folds=folds)  # does not raise


def test_the_refusal_matches_the_real_split():
    items = [(f"{label}{i}", label) for label in ("a", "b") for i in range(4)]
    with pytest.raises(ValueError, match="2 training images, fewer than folds=3"):
        stratified_split(items, 0.4, seed=1, folds=3)


def test_training_images_never_shrink_as_a_class_grows():
    fractions = [i / 200 for i in range(1, 200)] + [0.5 - 1e-12, 0.5 + 1e-12, 1 - 1e-9]
    for f in fractions:
        counts = [training_images(n, f) for n in range(0, 400)]
        assert counts == sorted(counts), f
        assert all(b - a <= 1 for a, b in itertools.pairwise(counts)), f


def test_the_split_check_waits_for_valid_inputs():
    with pytest.raises(ValueError, match="invalid run parameters") as err:
        validate({"min_images_per_class": 2, "cv_folds": 1, "test_fraction": 0.0})
    assert "training images" not in str(err.value)  # the bad values themselves are named


# --- class names: one safe path component; folders: plain repository paths ------------------


def test_class_names_and_folders_are_checked():
    with pytest.raises(ValueError, match=r"class name '\.\./x'"):
        validate({"classes": {"../x": "a", "b": "b"}})
    with pytest.raises(ValueError, match=r"must not contain '\.\.'"):
        validate({"classes": {"a": "x/../y", "b": "b"}})


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "is empty"),
        (".", "must not start with '.'"),
        ("..", "must not start with '.'"),
        (".hidden", "must not start with '.'"),
        ("a/b", "must be letters, digits"),
        ("/tmp/x", "must be letters, digits"),
        ("a\\b", "must be letters, digits"),
        ("messi\n", "must be letters, digits"),
        ("mes\x00si", "must be letters, digits"),
        ("m essi", "must be letters, digits"),
        ("messí", "must be letters, digits"),
        ("x" * (CLASS_NAME_MAX + 1), f"longer than {CLASS_NAME_MAX}"),
        (3, "is not a string"),
    ],
)
def test_bad_class_names_are_named(name, why):
    with pytest.raises(ValueError, match=f"class name {re_repr(name)}.*{why}"):
        check_class_name(name)


def re_repr(value):
    return re.escape(repr(value))


def test_good_class_names_pass():
    for name in ("messi", "Ronaldo", "c_7", "a.b-c", "x" * CLASS_NAME_MAX, "x_", "-x"):
        assert check_class_name(name) == name


@pytest.mark.parametrize("name", ["_messi", "_x", "__"])
def test_a_class_name_spark_would_skip_is_refused_everywhere(name):
    """Spark's file sources skip a folder ``_messi``: the class would be dropped whole."""
    from imgclf import params

    with pytest.raises(ValueError, match=re.escape(f"class name {name!r} starts with '_'")):
        check_class_name(name)
    with pytest.raises(ValueError, match=r"^invalid run parameters: class name '_"):
        params.validate({"classes": {name: "CH13/a", "ronaldo": "CH13/b"}}, check_weights=False)
    assert name not in params.airflow_params(["classes"])["classes"]["default"]


@pytest.mark.parametrize(
    ("folder", "why"),
    [
        ("", "is empty"),
        ("/", "is empty"),
        ("/CH13/football", "no leading '/'"),
        ("CH13/../secrets", "must not contain '..'"),
        ("..", "must not contain '..'"),
        ("CH13\\football", "not a backslash"),
        ("CH13/foot\x00ball", "control character"),
        ("CH13/foot\nball", "control character"),
        ("CH13//football", "empty or '.' components"),
        ("./CH13", "empty or '.' components"),
        (None, "is not a string"),
    ],
)
def test_bad_folders_are_named(folder, why):
    with pytest.raises(ValueError, match=f"classes.messi folder {re_repr(folder)} .*{why}"):
        check_classes({"messi": folder, "ronaldo": "CH13/football/ronaldo"})
    with pytest.raises(ValueError, match=f"classes.messi folder {re_repr(folder)}"):
        validate({"classes": {"messi": folder, "ronaldo": "CH13/football/ronaldo"}})


def test_names_differing_only_in_case_or_sharing_a_folder_are_refused():
    with pytest.raises(ValueError, match=r"class names 'Messi' and 'messi' differ only in case"):
        check_classes({"Messi": "a/messi", "messi": "b/messi"})
    with pytest.raises(ValueError, match=r"classes 'a' and 'b' have the same folder 'x/y'"):
        check_classes({"a": "x/y", "b": "x/y/"})
    with pytest.raises(ValueError, match="differ only in case"):
        validate({"classes": {"Messi": "a/messi", "messi": "b/messi"}})


def test_good_classes_pass_unchanged():
    classes = {"messi": "CH13/football/messi", "ronaldo": "CH13/football/ronaldo/"}
    assert check_classes(classes) == classes
    assert validate({"classes": classes})["classes"] == classes
