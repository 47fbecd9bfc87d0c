"""Fixtures of the data tests."""

from pathlib import Path

import pytest

from tests.data.data_fixtures import write_finetune, write_images


@pytest.fixture
def finetune_root(tmp_path: Path) -> Path:
    """An RSITMD-layout folder: annotation file and images in split folders."""
    write_finetune(tmp_path)
    write_images(tmp_path, in_split_folders=True)
    return tmp_path
