"""Benchmarks that print tables (never timed unit tests).

``python -m bench.scheduler`` measures the pure core (scheduler, loading, expressions) without a
server; ``python -m bench.engine`` runs YAML definitions against a hand-written Temporal
workflow on the real embedded dev server. See bench/README.md.
"""
