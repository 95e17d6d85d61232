"""Meet attendance: billing-grade Google Meet attendance in Firestore (README.md, docs/)."""

#: The package's version: the wheel's (pyproject.toml reads it) and the CLI's ``--version``.
__version__ = "0.1.0"
