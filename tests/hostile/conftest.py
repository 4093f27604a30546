"""Hypothesis profiles of the hostile suites.

``hostile`` (the default) keeps the whole language fuzz within a minute on a 2-core machine,
with the same examples on every run (a failure reproduces); ``hostile-long`` explores fresh
random examples for longer: ``TIDEFLOW_FUZZ_PROFILE=hostile-long pytest tests/hostile``.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "hostile",
    max_examples=200,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "hostile-long",
    parent=settings.get_profile("hostile"),
    max_examples=2_000,
    derandomize=False,
)
