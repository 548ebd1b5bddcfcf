"""Start the MLflow tracking server of the compose stack with its login on (``mlflow[auth]``).

Before the server starts, the pipeline's own account (``MLFLOW_TRACKING_USERNAME``, not an
admin) exists in the auth database with the password from ``.env``: created on a fresh volume,
its password reset to ``.env``'s on every start (so rotating it is: edit ``.env``, ``make up``).
Then this process becomes ``mlflow <args>`` (``--app-name basic-auth``).
"""

from __future__ import annotations

import configparser
import os
import sys


def ensure_pipeline_user() -> str:
    from mlflow.environment_variables import MLFLOW_AUTH_CONFIG_PATH
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "").strip()
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if not user or not password:
        sys.exit("mlflow: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set")
    config = configparser.ConfigParser()
    config.read(MLFLOW_AUTH_CONFIG_PATH.get())
    store = SqlAlchemyStore()
    store.init_db(config["mlflow"]["database_uri"])  # creates or migrates the tables
    if user == config["mlflow"]["admin_username"]:
        sys.exit(f"mlflow: the pipeline's account must not be the admin ({user!r})")
    if store.has_user(user, use_primary=True):
        store.update_user(user, password=password)
    else:
        store.create_user(user, password)
    return user


if __name__ == "__main__":
    print(f"mlflow: pipeline account {ensure_pipeline_user()!r} ready", flush=True)
    # the pipeline's password stays out of the server's environment
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    os.execvp("mlflow", ["mlflow", *sys.argv[1:]])
