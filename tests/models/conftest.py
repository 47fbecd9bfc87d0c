"""Fixtures of the model tests."""

import pytest

from tests.models.model_helpers import build_tiny


@pytest.fixture
def tiny_model():
    return build_tiny().eval()
