"""Benchmarks of operando-stream: one module per subject, JSON results in results/."""
