import pytest

from imgclf.params import DEFAULTS, validate


def test_defaults_are_valid_and_match_the_reference_run():
    p = validate({})
    assert p["model"] == "InceptionV3"
    assert (p["test_fraction"], p["seed"], p["max_iter"]) == (0.4, 12, 30)
    grid = p["tune_grid"]
    assert 0.05 in grid["reg_param"] and 0.3 in grid["elastic_net_param"]
    assert 15 in grid["max_iter"]


def test_model_file_must_exist_be_absolute_and_end_in_keras(tmp_path):
    good = tmp_path / "m.keras"
    good.write_bytes(b"x")
    assert validate({"model": str(good)})["model"] == str(good)
    for bad, why in (
        (str(tmp_path / "missing.keras"), "does not exist"),
        ("rel/m.keras", "absolute"),
        (str(tmp_path / "m.h5"), ".keras"),
    ):
        with pytest.raises(ValueError, match=why):
            validate({"model": bad})


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


def test_bad_grids_are_rejected():
    with pytest.raises(ValueError, match="tune_grid"):
        validate({"tune_grid": {"reg_param": [0.1]}})
    with pytest.raises(ValueError, match=r"tune_grid\.max_iter"):
        validate({"tune_grid": {**DEFAULTS["tune_grid"], "max_iter": [0]}})
    with pytest.raises(ValueError, match=r"tune_grid\.elastic_net_param"):
        validate({"tune_grid": {**DEFAULTS["tune_grid"], "elastic_net_param": [2.0]}})


def test_class_names_and_folders_are_checked():
    with pytest.raises(ValueError, match=r"class name '\.\./x'"):
        validate({"classes": {"../x": "a", "b": "b"}})
    with pytest.raises(ValueError, match=r"must not contain '\.\.'"):
        validate({"classes": {"a": "x/../y", "b": "b"}})
