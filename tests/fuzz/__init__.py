"""Fuzzing the local stack from ``openapi.yaml``: ``python -m tests.fuzz --requests N`` (``make
fuzz`` sends 10,000; ``tests/e2e/test_fuzz.py`` sends 1,000 as part of ``make test``).

``spec`` reads the description and judges answers, ``drafts`` draws the requests (schemathesis
strategies, Hypothesis), ``harness`` sends them with their credentials and sums up, ``snapshot``
reads every Firestore document of the emulator.
"""
