"""Project-specific checkov policies.

Loaded with ``checkov -d infra --external-checks-dir infra/checkov``.
"""
