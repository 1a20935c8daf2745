"""Reliability and security suite (issue 7): crash, concurrency, fuzz, fault and secret tests.

Measurement functions live in plain modules (``fuzz``, ``plugin_faults``, …)
so that ``scripts/reliability_report.py`` can run them outside pytest and write
their figures to docs/reliability.md.
"""
