import base64
import dataclasses
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import imgclf.model_files as model_files
import imgclf.models as models
from imgclf.models import (
    APPLICATIONS,
    ModelSpec,
    check_model,
    keras_cache_dir,
    model_identity,
    require_weights,
    split_face_model,
)


def keras_archive(path, members=("metadata.json", "config.json", "model.weights.h5")):
    """A zip with the members of a Keras 3 .keras file (content irrelevant to check_model)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name in members:
            zf.writestr(name, "{}")
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any HEAD request fails the test: the cache must be enough."""

    def boom(url, timeout):
        raise AssertionError(f"unexpected network access to {url}")

    monkeypatch.setattr(models, "_head_problem", boom)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return home


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_server():
    """A local HTTP server answering 200 to HEAD; yields its base URL and the paths asked."""
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "123")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_face_model_with_a_cnn_fallback_is_split_and_checked(tmp_path):
    cnn = keras_archive(tmp_path / "lite.keras")
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
    cnn = keras_archive(tmp_path / "lite.keras")  # identities parse the model: a real archive
    zeros = model_identity("dlib-face")
    alongside = model_identity(f"dlib-face+{cnn}")
    assert zeros == "dlib-face-v1"
    assert alongside == f"dlib-face-v1_with_{model_identity(str(cnn))}"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", alongside)  # a feature-store folder name
    assert model_identity(f"dlib-face+{cnn}", pooling="max") != alongside  # the CNN's pooling


# --- ModelSpec: the model string parsed once ----------------------------------------------

# A .keras-shaped zip with fixed member dates, so its sha256 (and file identities) never change.
PINNED_ARCHIVE = base64.b64decode(
    "UEsDBBQAAAAAAAAAIVBDv6ajAgAAAAIAAAANAAAAbWV0YWRhdGEuanNvbnt9UEsDBBQAAAAAAAAAIVBD"
    "v6ajAgAAAAIAAAALAAAAY29uZmlnLmpzb257fVBLAwQUAAAAAAAAACFQQ7+mowIAAAACAAAAEAAAAG1v"
    "ZGVsLndlaWdodHMuaDV7fVBLAQIUAxQAAAAAAAAAIVBDv6ajAgAAAAIAAAANAAAAAAAAAAAAAACAAQAA"
    "AABtZXRhZGF0YS5qc29uUEsBAhQDFAAAAAAAAAAhUEO/pqMCAAAAAgAAAAsAAAAAAAAAAAAAAIABLQAA"
    "AGNvbmZpZy5qc29uUEsBAhQDFAAAAAAAAAAhUEO/pqMCAAAAAgAAABAAAAAAAAAAAAAAAIABWAAAAG1v"
    "ZGVsLndlaWdodHMuaDVQSwUGAAAAAAMAAwCyAAAAiAAAAAAA"
)


@pytest.fixture
def pinned(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(PINNED_ARCHIVE)
    return str(path)


def test_model_spec_parses_each_kind(tmp_path, monkeypatch):
    cnn = str(keras_archive(tmp_path / "lite.keras"))
    app = ModelSpec.parse("InceptionV3")
    assert (app.kind, app.name, app.fallback) == ("application", "InceptionV3", None)
    assert app.is_application and not app.is_face and not app.is_file
    file = ModelSpec.parse(f"  {cnn} ")
    assert (file.kind, file.name, file.fallback) == ("file", cnn, None)
    assert file.is_file and not file.is_face
    face = ModelSpec.parse("dlib-face")
    assert (face.kind, face.name, face.fallback) == ("face", "dlib-face", None)
    assert face.is_face and not face.is_file
    assert ModelSpec.parse("dlib-face+EfficientNetV2B0") == ModelSpec(
        "face", "dlib-face", ModelSpec("application", "EfficientNetV2B0")
    )
    assert ModelSpec.parse(f"dlib-face+{cnn}").fallback == file
    assert ModelSpec.parse("dlib-face").with_fallback(cnn) == ModelSpec.parse(f"dlib-face+{cnn}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ModelSpec.parse("~/lite.keras") == file  # ~ expanded
    assert ModelSpec.parse("dlib-face+~/lite.keras").fallback == file


def test_model_spec_round_trips_through_its_string(tmp_path, monkeypatch):
    cnn = str(keras_archive(tmp_path / "lite.keras"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for text, canonical in [
        ("InceptionV3", "InceptionV3"),
        ("dlib-face", "dlib-face"),
        (cnn, cnn),
        ("~/lite.keras", cnn),
        (" dlib-face+ ~/lite.keras", f"dlib-face+{cnn}"),
        ("dlib-face+ConvNeXtTiny", "dlib-face+ConvNeXtTiny"),
    ]:
        spec = ModelSpec.parse(text)
        assert str(spec) == canonical == check_model(text)
        assert ModelSpec.parse(str(spec)) == spec
        assert hash(ModelSpec.parse(str(spec))) == hash(spec)  # frozen: usable as a key


def test_model_spec_takes_a_relative_file_from_a_folder(tmp_path, monkeypatch):
    cnn = str(keras_archive(tmp_path / "lite.keras"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"model file 'lite\.keras' must be an absolute path"):
        ModelSpec.parse("lite.keras")
    assert str(ModelSpec.parse("lite.keras", relative_to=tmp_path)) == cnn
    assert str(ModelSpec.parse("./lite.keras", relative_to=tmp_path)) == cnn
    assert str(ModelSpec.parse("dlib-face+lite.keras", relative_to=tmp_path)) == f"dlib-face+{cnn}"
    assert ModelSpec.parse("InceptionV3", relative_to=tmp_path).is_application
    with pytest.raises(ValueError, match=f"model file '{re.escape(str(tmp_path))}/no.keras' does"):
        ModelSpec.parse("no.keras", relative_to=tmp_path)


def test_model_spec_identity_is_the_old_model_identity(pinned):
    # pinned from model_identity as it was before ModelSpec (same inputs, same keys)
    file = "file-5467d23c72e7fcc2"
    cases = [
        (("InceptionV3",), "InceptionV3-avg"),
        (("InceptionV3", "max"), "InceptionV3-max"),
        (("VGG16", "flatten", "tf", "pad"), "VGG16-flatten-pad"),
        (("EfficientNetV2B0", "avg", "caffe"), "EfficientNetV2B0-avg"),
        ((pinned,), f"{file}-avg"),
        ((pinned, "max", "tf"), f"{file}-tf-max"),
        ((pinned, "avg", "caffe", "pad"), f"{file}-caffe-avg-pad"),
        ((pinned, "flatten", "none", "pad"), f"{file}-flatten-pad"),
        (("dlib-face",), "dlib-face-v1"),
        (("dlib-face", "max", "tf", "pad"), "dlib-face-v1"),
        (("dlib-face+InceptionV3",), "dlib-face-v1_with_InceptionV3-avg"),
        (("dlib-face+InceptionV3", "max", "none", "pad"), "dlib-face-v1_with_InceptionV3-max-pad"),
        ((f"dlib-face+{pinned}", "max", "torch"), f"dlib-face-v1_with_{file}-torch-max"),
    ]
    for (model, *rest), expected in cases:
        spec = ModelSpec.parse(model)
        assert spec.identity(*rest) == expected
        assert model_identity(model, *rest) == expected
        assert model_identity(spec, *rest) == expected


def test_model_spec_identity_checks_its_settings(pinned):
    with pytest.raises(ValueError, match="pooling 'sum' is not one of"):
        ModelSpec.parse("InceptionV3").identity("sum")
    with pytest.raises(ValueError, match="resize 'crop' is not one of"):
        ModelSpec.parse("dlib-face").identity(resize="crop")
    with pytest.raises(ValueError, match="preprocessing 'raw' is not one of"):
        ModelSpec.parse(pinned).identity(preprocessing="raw")
    assert ModelSpec.parse("InceptionV3").identity(preprocessing="raw") == "InceptionV3-avg"


def test_a_runtime_other_than_tensorflow_ends_the_identity(pinned):
    file = "file-5467d23c72e7fcc2"
    assert models.RUNTIMES == ("tensorflow", "openvino", "openvino-bf16")
    cases = [
        (("InceptionV3", "avg", "none", "stretch", "tensorflow"), "InceptionV3-avg"),
        (("InceptionV3", "avg", "none", "stretch", "openvino"), "InceptionV3-avg-openvino"),
        ((pinned, "max", "tf", "pad", "openvino-bf16"), f"{file}-tf-max-pad-openvino-bf16"),
        # dlib runs the face part: only the fallback CNN's key takes the runtime
        (("dlib-face", "avg", "none", "stretch", "openvino"), "dlib-face-v1"),
        (
            ("dlib-face+InceptionV3", "avg", "none", "stretch", "openvino"),
            "dlib-face-v1_with_InceptionV3-avg-openvino",
        ),
    ]
    for (model, *rest), expected in cases:
        assert ModelSpec.parse(model).identity(*rest) == expected
        assert model_identity(model, *rest) == expected
    with pytest.raises(ValueError, match="runtime 'onnx' is not one of"):
        ModelSpec.parse("InceptionV3").identity(runtime="onnx")


SUPPORTED = (
    "supported are ConvNeXtTiny, EfficientNetB0, EfficientNetV2B0, EfficientNetV2S, InceptionV3, "
    "MobileNetV3Large, MobileNetV3Small, ResNet50, VGG16, VGG19, Xception, dlib-face, an absolute "
    "path to a .keras file, or dlib-face+<one of those CNNs>"
)
AFTER = "after dlib-face+ give a CNN name or .keras file"


@pytest.mark.parametrize(
    ("model", "message"),
    [  # check_model's messages before ModelSpec, verbatim
        ("", "model is empty: give a Keras application name or a .keras file path"),
        ("  ", "model is empty: give a Keras application name or a .keras file path"),
        ("inceptionv3", f"unknown model 'inceptionv3' (did you mean 'InceptionV3'?): {SUPPORTED}"),
        ("ResNet51", f"unknown model 'ResNet51': {SUPPORTED}"),
        ("models/m.keras", "model file 'models/m.keras' must be an absolute path"),
        ("/x/m.h5", "model file '/x/m.h5' must end in .keras (Keras 3 format)"),
        ("/nope/x.keras", "model file '/nope/x.keras' does not exist"),
        ("dlib-face+", f"model 'dlib-face+': {AFTER}"),
        ("dlib-face+dlib-face", f"model 'dlib-face+dlib-face': {AFTER}"),
        ("dlib-face+ dlib-face", f"model 'dlib-face+ dlib-face': {AFTER}"),  # was let by
        ("dlib-face+dlib-face+VGG16", f"model 'dlib-face+dlib-face+VGG16': {AFTER}"),
        (
            "dlib-face+inceptionv3",
            "model 'dlib-face+inceptionv3': its fallback CNN: unknown model 'inceptionv3' "
            f"(did you mean 'InceptionV3'?): {SUPPORTED}",
        ),
        (
            "dlib-face+ /nope/x.keras",
            "model 'dlib-face+ /nope/x.keras': its fallback CNN: "
            "model file '/nope/x.keras' does not exist",
        ),
    ],
)
def test_model_spec_errors_are_check_models(model, message):
    with pytest.raises(ValueError, match="model") as parsed:
        ModelSpec.parse(model)
    assert str(parsed.value) == message
    with pytest.raises(ValueError, match="model") as checked:
        check_model(model)
    assert str(checked.value) == message


def test_a_model_spec_cannot_be_built_inconsistent():
    with pytest.raises(ValueError, match="model kind 'cnn'"):
        ModelSpec("cnn", "InceptionV3")
    with pytest.raises(ValueError, match=r"not a keras\.applications model"):
        ModelSpec("application", "ResNet51")
    with pytest.raises(ValueError, match=r"absolute path to a \.keras file"):
        ModelSpec("file", "m.keras")
    with pytest.raises(ValueError, match="take a fallback CNN"):
        ModelSpec("application", "VGG16", ModelSpec("application", "VGG19"))
    with pytest.raises(ValueError, match="take a fallback CNN"):
        ModelSpec("face", "dlib-face", ModelSpec("face", "dlib-face"))
    with pytest.raises(ValueError, match="only \\['dlib-face'\\] take a fallback CNN, not 'VGG16'"):
        ModelSpec.parse("VGG16").with_fallback("VGG19")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelSpec.parse("VGG16").name = "VGG19"


# --- .keras files: a Keras 3 archive, told from its zip directory alone ----------------------


def test_the_real_model_file_is_a_keras_3_archive(lite0):
    with zipfile.ZipFile(lite0) as zf:
        assert {"metadata.json", "config.json", "model.weights.h5"} <= set(zf.namelist())
    assert check_model(str(lite0)) == str(lite0)


def test_an_npz_weights_archive_is_a_keras_3_archive_too(tmp_path):
    path = keras_archive(
        tmp_path / "m.keras", ("metadata.json", "config.json", "model.weights.npz")
    )
    assert check_model(str(path)) == str(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip at all", r"is not a Keras 3 \.keras archive \(not a zip file\)"),
        (b"", r"not a zip file"),
        (("config.json", "model.weights.h5"), r"archive: it has no metadata\.json$"),
        (("metadata.json", "config.json"), r"archive: it has no model\.weights\.h5$"),
        (("weights.bin",), r"it has no metadata\.json, config\.json, model\.weights\.h5$"),
    ],
)
def test_a_keras_file_that_is_not_a_keras_3_archive_is_refused(tmp_path, content, message):
    path = tmp_path / "m.keras"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        keras_archive(path, content)
    with pytest.raises(ValueError, match=f"model file '{re.escape(str(path))}' .*{message}"):
        check_model(str(path))
    with pytest.raises(ValueError, match=f"its fallback CNN: model file '{re.escape(str(path))}'"):
        check_model(f"dlib-face+{path}")


def test_an_unreadable_keras_file_is_refused(tmp_path, monkeypatch):
    path = keras_archive(tmp_path / "m.keras")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(model_files.zipfile, "ZipFile", denied)
    with pytest.raises(ValueError, match=r"model file '.*m\.keras' cannot be read: Permission"):
        check_model(str(path))


def test_a_folder_named_keras_is_not_a_model_file(tmp_path):
    (tmp_path / "d.keras").mkdir()
    with pytest.raises(ValueError, match=r"'.*d\.keras' is not a file"):
        check_model(str(tmp_path / "d.keras"))


def test_a_home_relative_path_comes_back_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    keras_archive(tmp_path / "m.keras")
    assert check_model("~/m.keras") == str(tmp_path / "m.keras")
    assert check_model("dlib-face+~/m.keras") == f"dlib-face+{tmp_path / 'm.keras'}"
    with pytest.raises(ValueError, match=r"model file '~/nope\.keras' does not exist"):
        check_model("~/nope.keras")


# --- named models: their ImageNet weights must be cached or fetchable -------------------------


def test_the_catalogue_names_every_notop_weights_file_and_its_url():
    for spec in APPLICATIONS.values():
        assert spec.weights_file.endswith(".h5") and "top" in spec.weights_file
        assert spec.weights_url.startswith("https://storage.googleapis.com/")
        assert spec.weights_url.endswith("/" + spec.weights_file)
    assert APPLICATIONS["InceptionV3"].weights_url == (
        "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )


def test_the_cache_is_keras_home_models(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert keras_cache_dir() == tmp_path / "kh" / "models"  # created by Keras on import
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keras_cache_dir() == tmp_path / ".keras" / "models"


def test_the_weights_check_is_off_unless_asked(no_network, keras_home):
    assert check_model("InceptionV3") == "InceptionV3"  # no cache file, no network: not checked


def test_cached_weights_are_enough_without_any_network(no_network, keras_home):
    spec = APPLICATIONS["InceptionV3"]
    (keras_home / "models").mkdir()
    (keras_home / "models" / spec.weights_file).write_bytes(b"weights")
    assert require_weights(spec).startswith("cached at ")
    assert check_model("InceptionV3", check_weights=True) == "InceptionV3"


def test_absent_and_unreachable_weights_are_refused(keras_home, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/inception_v3_notop.h5"
    spec = dataclasses.replace(APPLICATIONS["InceptionV3"], weights_url=url)
    monkeypatch.setitem(APPLICATIONS, "InceptionV3", spec)
    cached = keras_home / "models" / spec.weights_file
    expected = (
        f"model 'InceptionV3': its ImageNet weights are not in the Keras cache ({cached}) and "
        f"could not be fetched from {url} (ConnectionRefusedError: Connection refused): "
        "pre-download them, or give a .keras file (make run-offline uses one)"
    )
    with pytest.raises(ValueError, match="not in the Keras cache") as err:
        check_model("InceptionV3", check_weights=True)
    assert str(err.value) == expected
    with pytest.raises(ValueError, match="fallback CNN") as err:  # the same check for its CNN
        check_model("dlib-face+InceptionV3", check_weights=True)
    assert str(err.value) == f"model 'dlib-face+InceptionV3': its fallback CNN: {expected}"


def test_absent_weights_that_answer_head_with_200_are_accepted(
    keras_home, head_server, monkeypatch
):
    base, asked = head_server
    spec = APPLICATIONS["EfficientNetV2B0"]
    monkeypatch.setitem(
        APPLICATIONS,
        spec.name,
        dataclasses.replace(spec, weights_url=f"{base}/w/{spec.weights_file}"),
    )
    assert check_model("EfficientNetV2B0", check_weights=True) == "EfficientNetV2B0"
    assert check_model("dlib-face+EfficientNetV2B0", check_weights=True)
    assert asked == [f"/w/{spec.weights_file}"] * 2


def test_a_non_200_answer_is_named(keras_home, monkeypatch):
    monkeypatch.setattr(models, "_head_problem", lambda url, timeout: "HTTP 404 Not Found")
    with pytest.raises(ValueError, match=r"could not be fetched from https://\S+ \(HTTP 404 Not"):
        check_model("VGG16", check_weights=True)
