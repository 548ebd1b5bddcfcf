"""The featurizer's OpenVINO runtime: the Keras feature extractor as OpenVINO IR on the CPU.

``runtime="openvino"`` compiles with ``INFERENCE_PRECISION_HINT=f32``: features within 1e-4 of
TensorFlow's. ``runtime="openvino-bf16"`` asks for bf16 (used where the CPU has it, f32
elsewhere): faster again, but features off by up to about 0.5, so only when chosen.

Converting (Keras -> TensorFlow SavedModel -> ``openvino.convert_model``) needs TensorFlow and
takes seconds, so it happens once per model: the IR is kept in
``<cache>/openvino/<key>/`` (``Settings.cache_dir``: ``<IMGCLF_HOME>/cache`` or
``IMGCLF_CACHE_DIR``; ``model.xml``, ``model.bin``, ``meta.json``) and later
worker starts only read and compile it, without importing TensorFlow. ``<key>`` is the model's
feature identity under TensorFlow (a model file's content hash or an application's name, the
pooling, the preprocessing) and a digest of the OpenVINO, Keras and TensorFlow versions that made
it; the precision is a compile option, so both runtimes share one IR. The preprocessing stays
outside the IR, in numpy, exactly as Keras computes it (``meta.json`` names it).

A conversion is staged in a hidden folder beside its key and renamed into place once complete,
under a per-key lock (``imgclf.files.locked``): two workers loading a new model at once convert
it once, and a crash never leaves a partial IR under its key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import numpy as np

from imgclf.files import atomic_write_json, fsync_dir, locked
from imgclf.models import PREPROCESSINGS, ModelSpec
from imgclf.settings import Settings
from spark_tasks.keras_models import LoadedModel

log = logging.getLogger(__name__)

# runtime -> INFERENCE_PRECISION_HINT
PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16"}
IR_XML, IR_BIN, META = "model.xml", "model.bin", "meta.json"
STALE_STAGE_S = 3600  # a staging folder this old was left by a crashed conversion

# Conversions made by this process (the cache is meant to keep this at one per model).
conversions = 0

# Keras' imagenet_utils constants (keras/src/applications/imagenet_utils.py)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CAFFE_MEAN = (103.939, 116.779, 123.68)


def preprocess_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    """``imagenet_utils.preprocess_input(x, mode=mode)`` on a numpy batch, without Keras.

    The same numpy operations in the same order as Keras' ``_preprocess_numpy_input``
    (channels last), so the same float32 results bit for bit; ``"none"`` returns ``x``.
    """
    if mode == "none":
        return x
    x = np.array(x, dtype=np.float32)  # a copy: the caller's batch is left alone
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "torch":
        x /= 255.0
        mean, std = _TORCH_MEAN, _TORCH_STD
    elif mode == "caffe":
        x = x[..., ::-1]  # RGB -> BGR
        mean, std = _CAFFE_MEAN, None
    else:
        raise ValueError(f"preprocessing {mode!r} is not one of {PREPROCESSINGS}")
    for c in range(3):
        x[..., c] -= mean[c]
        if std is not None:
            x[..., c] /= std[c]
    return x


def preprocessing_mode(fn: Callable[[np.ndarray], np.ndarray]) -> str:
    """Which of ``PREPROCESSINGS`` ``fn`` computes (a Keras ``preprocess_input``), by probing.

    Raises ``ValueError`` if it is none of them: such a model cannot leave its scaling to numpy.
    """
    probe = np.random.default_rng(0).uniform(0, 255, (2, 3, 3, 3)).astype(np.float32)
    want = np.asarray(fn(probe.copy()))
    for mode in PREPROCESSINGS:
        got = preprocess_numpy(probe.copy(), mode)
        if got.shape == want.shape and np.array_equal(got, want):
            return mode
    raise ValueError(f"the model's preprocessing is none of {PREPROCESSINGS}")


def cache_root() -> Path:
    """``<cache>/openvino`` (``Settings.cache_dir``)."""
    return Settings.from_env().cache_dir / "openvino"


def _version(*dists: str) -> str:
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(dist)
    return "none"


def toolchain() -> dict[str, str]:
    """The versions an IR depends on besides the model: its converter and exporters."""
    return {
        "openvino": _version("openvino"),
        "keras": _version("keras"),
        "tensorflow": _version("tensorflow", "tensorflow-cpu"),
    }


def cache_key(model: str | ModelSpec, pooling: str = "avg", preprocessing: str = "none") -> str:
    """The folder name of ``model``'s IR: its TensorFlow feature identity + a toolchain digest."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    if spec.is_face:
        raise ValueError(f"model {str(spec)!r} is a face model: dlib runs it, not OpenVINO")
    tools = json.dumps(toolchain(), sort_keys=True).encode()
    return f"{spec.identity(pooling, preprocessing)}-{hashlib.sha256(tools).hexdigest()[:12]}"


@contextlib.contextmanager
def _no_telemetry() -> Iterator[None]:
    """Keep OpenVINO from reporting usage to Google Analytics.

    ``import openvino`` and ``openvino.convert_model`` set up telemetry (a client id and
    counters in ``~/intel/``, events sent by a forked process each) unless the user opted out
    (``opt_in_out --opt_out``); ``openvino_telemetry`` stays off when ``CI=true``. A pipeline's
    workers must not phone home, nor fork from a threaded TensorFlow process.
    """
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old


def _openvino():
    """The ``openvino`` module, imported without telemetry."""
    with _no_telemetry():
        import openvino

    return openvino


def convert(model: str, pooling: str, preprocessing: str, dest: Path) -> dict:
    """Write the IR of ``model`` (pooled as asked) into the new, empty folder ``dest``.

    Returns its ``meta.json``: input size, feature dimension, the numpy preprocessing, versions.
    """
    global conversions
    ov = _openvino()
    from spark_tasks.keras_models import configure_tensorflow, load

    started = time.perf_counter()
    configure_tensorflow()  # the featurizer's thread rule for TensorFlow too
    loaded = load(model, pooling, preprocessing)
    mode = preprocessing_mode(loaded.preprocess)
    saved = dest / "saved_model"
    loaded.model.export(str(saved), format="tf_saved_model", verbose=False)
    with _no_telemetry():
        ir = ov.convert_model(str(saved))
    ov.save_model(ir, str(dest / IR_XML), compress_to_fp16=False)  # f32 weights, as trained
    shutil.rmtree(saved)
    meta = {
        "model": model,
        "pooling": pooling,
        "preprocessing": mode,
        "size": list(loaded.size),  # (width, height)
        "dim": loaded.dim,
        "toolchain": toolchain(),
        "convert_seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write_json(dest / META, meta)
    conversions += 1
    return meta


def _seal(folder: Path) -> None:
    """Make a staged IR readable by every worker's user and durable before it is renamed."""
    for path in folder.iterdir():
        path.chmod(0o644)  # mkstemp/mkdtemp made them private
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    folder.chmod(0o755)
    fsync_dir(folder)


def _remove_stale_stages(root: Path, key: str) -> None:
    """Staging folders of ``key`` left by a crashed conversion (we hold its lock)."""
    for stage in root.glob(f".{key}.*.part"):
        with contextlib.suppress(OSError):
            if time.time() - stage.stat().st_mtime > STALE_STAGE_S:
                shutil.rmtree(stage, ignore_errors=True)


def ensure_ir(
    model: str, pooling: str = "avg", preprocessing: str = "none", root: Path | None = None
) -> Path:
    """The cache folder holding ``model``'s IR, converted first if it is not there yet.

    Only complete folders ever appear under a key (stage, fsync, rename); a per-key lock makes
    concurrent first loads on a host convert once, and a lost rename race between hosts
    sharing the folder keeps the winner's IR.
    """
    root = Path(root) if root is not None else cache_root()
    key = cache_key(model, pooling, preprocessing)
    folder = root / key
    if (folder / META).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f".{key}.lock"):
        if (folder / META).is_file():  # another worker converted it while we waited
            return folder
        if folder.exists():  # not made by this module (no meta.json): replace it
            shutil.rmtree(folder)
        _remove_stale_stages(root, key)
        stage = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".part", dir=root))
        try:
            convert(model, pooling, preprocessing, stage)
            _seal(stage)
            try:
                os.rename(stage, folder)
            except OSError:
                if not (folder / META).is_file():
                    raise
            fsync_dir(root)
        finally:
            shutil.rmtree(stage, ignore_errors=True)  # left only if the rename did not happen
    return folder


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(root, os.W_OK | os.X_OK)


def load(
    model: str,
    pooling: str = "avg",
    preprocessing: str = "none",
    runtime: str = "openvino",
    threads: int | None = None,
    root: Path | None = None,
) -> tuple[LoadedModel, Callable[[np.ndarray], np.ndarray]]:
    """``model`` compiled for this CPU and its inference function (batch in, features out).

    The IR comes from the cache (converted first if need be; with an unwritable cache, into
    a temporary folder for this process only). ``threads`` caps OpenVINO's inference threads
    (``INFERENCE_NUM_THREADS``; ``None``: OpenVINO's choice, every core).
    """
    if runtime not in PRECISIONS:
        raise ValueError(
            f"runtime {runtime!r} is not one of the OpenVINO runtimes {tuple(PRECISIONS)}"
        )
    model = str(ModelSpec.parse(model))
    root = Path(root) if root is not None else cache_root()
    folder = root / cache_key(model, pooling, preprocessing)
    with contextlib.ExitStack() as cleanup:
        if not (folder / META).is_file():
            if _writable(root):
                folder = ensure_ir(model, pooling, preprocessing, root)
            else:
                log.warning("%s is not writable: converting %s for this process only", root, model)
                folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
                convert(model, pooling, preprocessing, folder)
        return load_folder(folder, runtime, threads)


def load_folder(
    folder: Path, runtime: str = "openvino", threads: int | None = None
) -> tuple[LoadedModel, Callable[[np.ndarray], np.ndarray]]:
    """The IR in ``folder`` (as ``ensure_ir`` writes it) compiled for this CPU, as ``load``.

    Reads it once: the folder may go away afterwards. No TensorFlow.
    """
    if runtime not in PRECISIONS:
        raise ValueError(
            f"runtime {runtime!r} is not one of the OpenVINO runtimes {tuple(PRECISIONS)}"
        )
    meta = json.loads((folder / META).read_text())
    compiled = _compile(folder / IR_XML, PRECISIONS[runtime], threads)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def infer(batch: np.ndarray) -> np.ndarray:
        return request.infer([np.ascontiguousarray(batch, dtype=np.float32)])[output]

    width, height = meta["size"]
    preprocess = functools.partial(preprocess_numpy, mode=meta["preprocessing"])
    return LoadedModel(compiled, (int(width), int(height)), int(meta["dim"]), preprocess), infer


def _compile(xml: Path, precision: str, threads: int | None):
    core = _openvino().Core()
    config: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads is not None:
        # one Python worker per concurrent Spark task: each gets its task's CPUs, unpinned (the
        # OS places the workers' threads: pinning them gained nothing in make bench)
        config["INFERENCE_NUM_THREADS"] = threads
        config["ENABLE_CPU_PINNING"] = False
    return core.compile_model(core.read_model(str(xml)), "CPU", config)
