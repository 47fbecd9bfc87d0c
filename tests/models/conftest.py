"""Model-test fixtures live in model_helpers.py (importable by name from the tests); registered here."""

from model_helpers import tiny_model  # noqa: F401  (pytest fixture)
