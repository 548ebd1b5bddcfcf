#!/usr/bin/env bash
# The compose stack's Celery worker (docker-compose.yaml, service airflow-worker). Spark drivers
# started here (spark-submit, client mode) must hold the cluster's authentication secret in
# their conf; it goes into a spark-defaults.conf only this user can read, never onto a command
# line (Spark redacts it from its UI and event logs). Then: `airflow celery worker`.
set -euo pipefail
: "${_SPARK_AUTH_SECRET:?_SPARK_AUTH_SECRET is empty: set SPARK_AUTH_SECRET in .env}"
SPARK_CONF_DIR=$(mktemp -d /tmp/spark-conf.XXXXXX)  # 0700
(umask 077 && printf 'spark.authenticate.secret %s\n' "$_SPARK_AUTH_SECRET" \
    > "$SPARK_CONF_DIR/spark-defaults.conf")
export SPARK_CONF_DIR
exec airflow celery worker "$@"
