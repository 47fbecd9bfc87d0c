"""Data-test fixtures live in data_fixtures.py (importable by name from the tests); registered here."""

from data_fixtures import finetune_root  # noqa: F401  (pytest fixture)
