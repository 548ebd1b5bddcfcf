"""``DeepImageFeaturizer``: sparkdl's transfer-learning Transformer, rebuilt on Spark 4 + Keras 3.

Same shape as ``sparkdl.DeepImageFeaturizer(inputCol, outputCol, modelName)``, with these
differences:

- the input column holds encoded image bytes (``binaryFile``'s ``content``), decoded with Pillow
  inside the UDF (EXIF orientation, every colour mode, whole-image bilinear resize);
- inference runs through ``pyspark.ml.functions.predict_batch_udf``: the model is built once per
  Python worker and reused across batches and tasks, never per row;
- besides the named Keras applications, any ``.keras`` file works (``modelPath``);
- ``runtime`` runs the CNN in TensorFlow (default) or as OpenVINO IR on the CPU: ``openvino``
  (f32, features within 1e-4 of TensorFlow's, faster) or ``openvino-bf16`` (reduced
  precision, faster again, features further from TensorFlow's); see ``openvino_models`` and,
  for the speeds, ``docs/performance.md``;
- ``pooling`` chooses ``avg`` (default), ``max`` or ``flatten`` (sparkdl's 131,072 InceptionV3
  features);
- an undecodable image does not fail the job: ``handleInvalid="skip"`` drops it,
  ``"keep"`` keeps it with a null vector and the reason in ``errorCol``, ``"error"`` fails.

Its length is the pyspark.ml Params idiom (a declared Param, a getter and a setter for each);
the factory that builds one from a run's settings (``make_featurizer``) closes the module.

Params hold names and paths only, so the Transformer persists with
``DefaultParamsWritable``/``DefaultParamsReadable`` and a saved ``PipelineModel`` of featurizer +
classifier scores raw images in another process.
"""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector, predict_batch_udf
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasHandleInvalid, HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from imgclf.models import (
    APPLICATIONS,
    BATCH_SIZE,
    FACE_MODELS,
    POOLINGS,
    PREPROCESSING,
    PREPROCESSINGS,
    RESIZE_MODES,
    RUNTIMES,
    ModelSpec,
)
from spark_tasks import extractor

HANDLE_INVALID = ("skip", "keep", "error")
ERROR_COL = "featurizer_error"  # errorCol's default


# The model cache and loading live in ``spark_tasks.extractor`` (shared with the serving model);
# these names stay importable from here.
_MODELS = extractor._MODELS
cached_model = extractor.cached_model


def make_predict_fn(
    model: ModelSpec | str,
    pooling: str,
    preprocessing: str,
    resize: str,
    runtime: str = "tensorflow",
):  # -> Callable[[], Callable[[np.ndarray], dict]]
    """``make_predict_fn`` for ``predict_batch_udf``: the model is loaded once per worker."""

    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    if spec.is_face:
        fallback = str(spec.fallback) if spec.fallback is not None else None
        return make_face_predict_fn(fallback, pooling, preprocessing, resize, runtime)
    model = str(spec)  # what the workers get: a plain string

    def make():
        loaded, infer = cached_model(model, pooling, preprocessing, runtime)

        def predict(contents) -> dict:
            features, errors = extractor.features(contents, loaded, infer, resize)
            return {"features": features, "error": errors}

        return predict

    return make


def make_face_predict_fn(
    fallback: str | None = None,
    pooling: str = "avg",
    preprocessing: str = "none",
    resize: str = "stretch",
    runtime: str = "tensorflow",
):
    """``make_predict_fn`` for ``dlib-face``: detectors and encoder loaded once per worker.

    With a ``fallback`` CNN, its features of the whole image follow the 129 face features; the
    ``runtime`` runs that CNN (dlib always runs the face part).
    """

    def make():
        face = extractor.face_model()
        cnn, infer = (
            cached_model(fallback, pooling, preprocessing, runtime) if fallback else (None, None)
        )

        def predict(contents) -> dict:
            features, errors = extractor.face_features(contents, face, cnn, infer, resize)
            return {"features": features, "error": errors}

        return predict

    return make


def _param(name: str, doc: str, converter=TypeConverters.toString) -> Param:
    """A class-level Param of the featurizer (pyspark's idiom, without the repetition)."""
    return Param(Params._dummy(), name, doc, typeConverter=converter)


class DeepImageFeaturizer(
    Transformer,
    HasInputCol,
    HasOutputCol,
    HasHandleInvalid,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Features of a pretrained CNN for each encoded image in ``inputCol``, as an ML vector."""

    _input_kwargs: dict[str, Any]  # set by @keyword_only

    modelName = _param(
        "modelName",
        f"a keras.applications model, one of {sorted(APPLICATIONS)}, or 'dlib-face' "
        "(face-identity embedding); or set modelPath",
    )
    modelPath = _param(
        "modelPath",
        "absolute path of a .keras model file (overrides modelName); input size read from it",
    )
    preprocessing = _param(
        "preprocessing",
        f"pixel scaling before a model file, one of {PREPROCESSINGS}; 'none' = inside the file",
    )
    pooling = _param(
        "pooling",
        f"how spatial features become a vector: one of {POOLINGS}",
    )
    resize = _param(
        "resize",
        f"resize policy: one of {RESIZE_MODES} (stretch = whole image to the input size)",
    )
    batchSize = _param(
        "batchSize",
        "images per model call (bounds memory per Python worker)",
        TypeConverters.toInt,
    )
    fallbackModel = _param(
        "fallbackModel",
        "with modelName='dlib-face': a CNN (application name or .keras path) whose features of "
        "the whole image go alongside the face features; unset: a face-less image gets zeros",
    )
    errorCol = _param(
        "errorCol",
        "column for the decode error of each row (empty string when fine)",
    )
    runtime = _param(
        "runtime",
        f"where the CNN runs, one of {RUNTIMES}: tensorflow (unset means this), openvino (the "
        "same model as OpenVINO IR on the CPU, f32: features within 1e-4 of TensorFlow's) or "
        "openvino-bf16 (reduced precision: faster, features further from TensorFlow's)",
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str = "content",
        outputCol: str = "features",
        modelName: str | None = None,
        modelPath: str | None = None,
        fallbackModel: str | None = None,
        preprocessing: str = "none",
        pooling: str = "avg",
        resize: str = "stretch",
        batchSize: int = 32,
        handleInvalid: str = "skip",
        errorCol: str = ERROR_COL,
        runtime: str | None = None,
    ):
        super().__init__()
        self._setDefault(
            inputCol="content",
            outputCol="features",
            preprocessing="none",
            pooling="avg",
            resize="stretch",
            batchSize=32,
            handleInvalid="skip",
            errorCol=ERROR_COL,
        )
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, **params: Any) -> DeepImageFeaturizer:
        """Set any of the constructor's params by keyword (``None`` leaves one as it is)."""
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        self._set(**kwargs)
        self._canonical_runtime()
        self.validate()
        return self

    # --- getters and setters (pyspark.ml style) -----------------------------------------
    # modelName, modelPath and fallbackModel have no default: their getters give None if unset.
    # runtime has none either, so that a TensorFlow featurizer saves exactly as before the
    # param existed (older code loads it): unset means "tensorflow", and setting "tensorflow"
    # clears it.
    # Setters of the choice params check the value at once; validate() checks the whole.
    def setInputCol(self, value: str) -> DeepImageFeaturizer:
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> DeepImageFeaturizer:
        return self._set(outputCol=value)

    def getModelName(self) -> str | None:
        return self.getOrDefault(self.modelName) if self.isDefined(self.modelName) else None

    def setModelName(self, value: str) -> DeepImageFeaturizer:
        return self._set(modelName=value)

    def getModelPath(self) -> str | None:
        return self.getOrDefault(self.modelPath) if self.isDefined(self.modelPath) else None

    def setModelPath(self, value: str) -> DeepImageFeaturizer:
        return self._set(modelPath=value)

    def getFallbackModel(self) -> str | None:
        if self.isDefined(self.fallbackModel):
            return self.getOrDefault(self.fallbackModel)
        return None

    def setFallbackModel(self, value: str) -> DeepImageFeaturizer:
        return self._set(fallbackModel=value)

    def getPreprocessing(self) -> str:
        return self.getOrDefault(self.preprocessing)

    def setPreprocessing(self, value: str) -> DeepImageFeaturizer:
        return self._set(preprocessing=_choice("preprocessing", value, PREPROCESSINGS))

    def getPooling(self) -> str:
        return self.getOrDefault(self.pooling)

    def setPooling(self, value: str) -> DeepImageFeaturizer:
        return self._set(pooling=_choice("pooling", value, POOLINGS))

    def getResize(self) -> str:
        return self.getOrDefault(self.resize)

    def setResize(self, value: str) -> DeepImageFeaturizer:
        return self._set(resize=_choice("resize", value, RESIZE_MODES))

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def setBatchSize(self, value: int) -> DeepImageFeaturizer:
        return self._set(batchSize=_batch_size(value))

    # getHandleInvalid comes with HasHandleInvalid
    def setHandleInvalid(self, value: str) -> DeepImageFeaturizer:
        return self._set(handleInvalid=_choice("handleInvalid", value, HANDLE_INVALID))

    def getErrorCol(self) -> str:
        return self.getOrDefault(self.errorCol)

    def setErrorCol(self, value: str) -> DeepImageFeaturizer:
        return self._set(errorCol=value)

    def getRuntime(self) -> str:
        return self.getOrDefault(self.runtime) if self.isDefined(self.runtime) else RUNTIMES[0]

    def setRuntime(self, value: str) -> DeepImageFeaturizer:
        self._set(runtime=_choice("runtime", value, RUNTIMES))
        self._canonical_runtime()
        return self

    def _canonical_runtime(self) -> None:
        if self.isSet(self.runtime) and self.getOrDefault(self.runtime) == RUNTIMES[0]:
            self.clear(self.runtime)

    # --- helpers --------------------------------------------------------------------------
    def modelSpec(self) -> ModelSpec:
        """The model this featurizer runs: modelPath if set, else modelName (+ fallbackModel)."""
        spec = self._model_spec()
        if spec is None:
            raise ValueError("DeepImageFeaturizer needs modelName or modelPath")
        return spec

    def model(self) -> str:
        """The model this featurizer runs as a model string (``str(self.modelSpec())``)."""
        return str(self.modelSpec())

    def _model_spec(self) -> ModelSpec | None:
        name, path, fallback = self.getModelName(), self.getModelPath(), self.getFallbackModel()
        named = None
        if name:
            try:
                named = ModelSpec.parse(name)
            except ValueError:
                named = None
            if named is None or named.is_file or named.fallback is not None:
                raise ValueError(
                    f"modelName {name!r} is not supported; choose one of "
                    f"{sorted(APPLICATIONS) + list(FACE_MODELS)} or give a .keras file as "
                    "modelPath"
                )
        from_path = ModelSpec.parse(path) if path else None
        if fallback:
            if named is None or not named.is_face or from_path is not None:
                raise ValueError(
                    f"fallbackModel={fallback!r} only goes with modelName in {list(FACE_MODELS)}"
                )
            named = named.with_fallback(fallback)
        return from_path or named

    def validate(self) -> ModelSpec | None:
        """Check every param (like sparkdl checked ``modelName``); raise ``ValueError``.

        Returns the model spec, ``None`` while neither modelName nor modelPath is set.
        """
        spec = self._model_spec()
        _choice("pooling", self.getPooling(), POOLINGS)
        _choice("resize", self.getResize(), RESIZE_MODES)
        _choice("preprocessing", self.getPreprocessing(), PREPROCESSINGS)
        _choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID)
        _choice("runtime", self.getRuntime(), RUNTIMES)
        _batch_size(self.getBatchSize())
        return spec

    def identity(self) -> str:
        """Key of the exact features this featurizer produces (``ModelSpec.identity``).

        A runtime other than TensorFlow ends the key: its features get their own store.
        """
        return self.modelSpec().identity(
            self.getPooling(), self.getPreprocessing(), self.getResize(), self.getRuntime()
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        self.validate()
        in_col, out_col = self.getInputCol(), self.getOutputCol()
        err_col = self.getErrorCol()
        handle = self.getHandleInvalid()
        udf = predict_batch_udf(
            make_predict_fn(
                self.modelSpec(),
                self.getPooling(),
                self.getPreprocessing(),
                self.getResize(),
                self.getRuntime(),
            ),
            return_type=StructType(
                [
                    StructField("features", ArrayType(FloatType())),
                    StructField("error", StringType()),
                ]
            ),
            batch_size=self.getBatchSize(),
        ).asNondeterministic()  # never duplicated by the optimizer: each image runs once
        tmp = f"__{out_col}_struct"
        df = dataset.withColumn(tmp, udf(F.col(in_col)))
        ok = F.col(f"{tmp}.error") == F.lit("")
        df = df.withColumn(
            out_col, F.when(ok, array_to_vector(F.col(f"{tmp}.features")))
        ).withColumn(err_col, F.col(f"{tmp}.error"))
        df = df.drop(tmp)
        if handle == "skip":
            return df.filter(F.col(err_col) == F.lit("")).drop(err_col)
        if handle == "error":
            # a filter predicate, so no projection pruning (count(), select) can skip the check
            fail = F.raise_error(F.concat(F.lit("undecodable image: "), F.col(err_col)))
            return df.filter(F.when(F.col(err_col) == F.lit(""), F.lit(True)).otherwise(fail)).drop(
                err_col
            )
        return df


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")
    return value


def _batch_size(value: int) -> int:
    value = TypeConverters.toInt(value)
    if value < 1:
        raise ValueError(f"batchSize={value} must be >= 1")
    return value


def make_featurizer(
    model: str | ModelSpec,
    pooling: str,
    preprocessing: str,
    batch_size: int,
    runtime: str = "tensorflow",
) -> DeepImageFeaturizer:
    """A ``DeepImageFeaturizer`` of ``content`` into ``features`` for a model name, file or
    face model (``ModelSpec``): the one place a featurizer is built from settings."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    return DeepImageFeaturizer(
        inputCol="content",
        outputCol="features",
        modelName=None if spec.is_file else spec.name,
        modelPath=spec.name if spec.is_file else None,
        # "dlib-face+<CNN>": the CNN's features go alongside the face features
        fallbackModel=str(spec.fallback) if spec.fallback is not None else None,
        pooling=pooling,
        preprocessing=preprocessing,
        batchSize=batch_size,
        runtime=runtime,  # "tensorflow" is saved as unset: such models load in older code
    )


def run_featurizer(params: dict[str, Any]) -> DeepImageFeaturizer:
    """The featurizer of a run's validated parameters (the train and tune jobs build the same)."""
    return make_featurizer(
        params["model"], params["pooling"], PREPROCESSING, BATCH_SIZE, params["runtime"]
    )
