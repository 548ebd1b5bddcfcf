# One image for every service: Airflow (api-server, scheduler, dag-processor, triggerer) and the
# Spark standalone master and workers, so the driver (in the scheduler, client mode) and the
# executors run the same Python, TensorFlow and project code.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps curl \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/default-java
ENV JAVA_HOME=/usr/lib/jvm/default-java

USER airflow
WORKDIR /opt/imgclf
COPY --chown=airflow:root pyproject.toml constraints.txt README.md ./
COPY --chown=airflow:root include ./include
COPY --chown=airflow:root spark_tasks ./spark_tasks
COPY --chown=airflow:root dags ./dags
COPY --chown=airflow:root plugins ./plugins
# The project's own pins (constraints.txt) include apache-airflow==3.3.2, the image's version.
RUN pip install --no-cache-dir -c constraints.txt -e . \
 && python -c "import imgclf, spark_tasks.featurizer, pyspark, tensorflow, keras, mlflow"

ENV IMGCLF_HOME=/data \
    IMGCLF_SPARK_TASKS=/opt/imgclf/spark_tasks \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/imgclf/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/imgclf/plugins \
    TF_CPP_MIN_LOG_LEVEL=2
