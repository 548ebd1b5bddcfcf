"""Online prediction: the champion served over HTTP with no Spark (``make serve``).

``champion``: which model version is served, followed as the registry's alias moves;
``app``: the ASGI app (the page, ``/predict``, MLflow's ``/invocations``); ``__main__``:
``python -m imgclf.serving``. The model itself is the pyfunc flavor every candidate is logged
with (``spark_tasks.serving``), loaded by name through MLflow: nothing here imports Spark code.
"""
