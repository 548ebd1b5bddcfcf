import re

import pytest

from imgclf.models import check_model, model_identity, split_face_model


def test_face_model_with_a_cnn_fallback_is_split_and_checked(tmp_path):
    cnn = tmp_path / "lite.keras"
    cnn.write_bytes(b"not really a model, but a file")
    assert split_face_model("dlib-face") == ("dlib-face", None)
    assert split_face_model(f"dlib-face+{cnn}") == ("dlib-face", str(cnn))
    assert split_face_model("InceptionV3") == ("InceptionV3", None)
    assert check_model(f"dlib-face+{cnn}") == f"dlib-face+{cnn}"
    assert check_model("dlib-face+EfficientNetV2B0") == "dlib-face+EfficientNetV2B0"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("dlib-face+", "after dlib-face\\+ give a CNN"),
        ("dlib-face+dlib-face", "after dlib-face\\+ give a CNN"),
        ("dlib-face+inceptionv3", "its fallback CNN: unknown model 'inceptionv3'.*InceptionV3"),
        ("dlib-face+/nope/x.keras", "its fallback CNN: model file '/nope/x.keras' does not exist"),
    ],
)
def test_bad_fallbacks_are_named(model, message):
    with pytest.raises(ValueError, match=message):
        check_model(model)


def test_identities_keep_the_two_fallbacks_apart(tmp_path):
    cnn = tmp_path / "lite.keras"
    cnn.write_bytes(b"x")
    zeros = model_identity("dlib-face")
    alongside = model_identity(f"dlib-face+{cnn}")
    assert zeros == "dlib-face-v1"
    assert alongside == f"dlib-face-v1_with_{model_identity(str(cnn))}"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", alongside)  # a feature-store folder name
    assert model_identity(f"dlib-face+{cnn}", pooling="max") != alongside  # the CNN's pooling
