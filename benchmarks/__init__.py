"""Benchmarks: run from a checkout (`make bench`); nothing in the product imports them."""
