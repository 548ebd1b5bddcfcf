# One image for every service of docker-compose.yaml: Airflow (api-server, scheduler,
# dag-processor, triggerer, Celery workers), the Spark standalone master and workers and the
# MLflow server, so the driver (in a Celery worker, client mode) and the executors run the same
# Python, TensorFlow and project code. Where no registry is reachable, AIRFLOW_BASE_IMAGE names
# a stand-in built from Debian's packages (docs/deployment.md, "No registry").
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}

USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless procps curl \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/default-java \
 && mkdir -p /data/spark-events && chown -R airflow:0 /data
ENV JAVA_HOME=/usr/lib/jvm/default-java

USER airflow
WORKDIR /opt/imgclf
# Dependencies first, in their own layer: a code change rebuilds only the layers below. The
# project's own pins (constraints.txt) include apache-airflow==3.3.2, the base image's version.
# A TLS-intercepting proxy's CA (compose: BUILD_CA_BUNDLE) is used for this step only: it is a
# build secret, never a file of the image. In the same layer (or it would still weigh): what
# nothing here runs, TensorFlow's C++ headers (for building custom ops) and the libraries' own
# test suites.
COPY --chown=airflow:0 pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=build_ca,uid=50000 \
    --mount=type=cache,target=/home/airflow/.cache/pip,uid=50000,gid=0 \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi \
 && python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["cluster"]))' > /tmp/requirements.txt \
 && python -m pip install -q --disable-pip-version-check -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && cd "$(python -c 'import importlib.util as u, os; \
print(os.path.dirname(os.path.dirname(u.find_spec("tensorflow").origin)))')" \
 && rm -rf tensorflow/include pandas/tests numpy/*/tests numpy/tests scipy/*/tests scipy/*/*/tests \
      pyarrow/tests matplotlib/tests sklearn/tests sklearn/*/tests
# the pip cache mount leaves ~/.cache owned by root: matplotlib and others keep their caches there
USER root
RUN chown -R airflow:0 /home/airflow/.cache
USER airflow

COPY --chown=airflow:0 README.md ./
COPY --chown=airflow:0 include ./include
COPY --chown=airflow:0 spark_tasks ./spark_tasks
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 plugins ./plugins
COPY --chown=airflow:0 deploy/mlflow_server.py deploy/airflow-worker.sh deploy/mlflow/basic_auth.ini ./deploy/
RUN --mount=type=secret,id=build_ca,uid=50000 \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi \
 && python -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps -e . \
 && python -c "import imgclf, spark_tasks.featurizer, pyspark, tensorflow, keras, mlflow, celery, psycopg2, airflow.providers.fab"

ENV IMGCLF_HOME=/data \
    IMGCLF_SPARK_TASKS=/opt/imgclf/spark_tasks \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/imgclf/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/imgclf/plugins \
    MLFLOW_AUTH_CONFIG_PATH=/opt/imgclf/deploy/basic_auth.ini \
    KERAS_HOME=/data/keras \
    TF_CPP_MIN_LOG_LEVEL=2
# what `make test-deploy` prunes when a rebuild leaves the previous image untagged
LABEL org.opencontainers.image.title=imgclf
