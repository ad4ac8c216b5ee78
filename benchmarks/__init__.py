"""Benchmarks: run by hand (python -m benchmarks.<name>), results as JSON in benchmarks/results/."""
