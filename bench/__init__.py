"""Benchmarks: ``python -m bench NAME [args]``; each prints a table. Results go to BENCHMARKS.md."""
