"""Spark tests use the session fixtures of tests/conftest.py (spark, tiny_model, images)."""
