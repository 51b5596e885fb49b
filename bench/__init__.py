"""Benchmarks (not tests): run them all with ``make bench`` (``.venv/bin/python -m bench``)."""
