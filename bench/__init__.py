"""Benchmarks: the product and a baseline measured side by side in the same run."""
