"""Data layer: generated dataset (synthetic), real-dataset import (importers, download),
captions and tokenizers (text), the canonical prepared format (prepared) and its report (summary)."""
