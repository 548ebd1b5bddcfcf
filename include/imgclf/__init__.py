"""imgclf: transfer-learning image classification on Spark, orchestrated by Airflow.

Pure logic only: importing this package (or any module in it) never imports TensorFlow, PySpark
or pandas, so the Airflow DAG can use it at parse time.
"""

__version__ = "0.1.0"
