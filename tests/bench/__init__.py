"""Benchmark harness for mailsms (``make bench`` / ``python -m tests.bench``).

Not part of the test suite's timing: only ``test_bench_smoke.py`` runs under
pytest, with tiny counts, to prove the harness still works.
"""
