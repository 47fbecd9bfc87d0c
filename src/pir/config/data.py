"""What the data side reads and produces: the built-in generated dataset (``SyntheticConfig``),
the dataset, captions and tokenizer (``DataConfig``), and the safety caps on images and archives."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pir.config.values import check, check_choice, recipe

DATASETS = ("synthetic", "rsitmd", "rsicd")


@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in generated remote-sensing dataset (``data.dataset: synthetic``)."""
    images: int = 2000              # total images over all splits
    image_size: int = 128           # side of each square RGB image, pixels
    classes: int = 16               # scene classes, taken in order from the RSITMD-like class list
    captions_per_image: int = 5     # RSITMD/RSICD have five
    distractor_rate: float = 0.5    # expected distractor objects from other classes per image ("semantic noise")
    generic_caption_rate: float = 0.2  # share of captions that mention only the scene, not the objects
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test fractions, by image
    planted_duplicates: int = 0     # near-duplicates of train images planted into val/test for the leakage
                                    # audit to find (re-encoded, cropped or recoloured copies; the default run plants 6)

    def __post_init__(self) -> None:
        check(self.images >= 3, "images", self.images, "must be >= 3 (one per split)")
        check(self.image_size >= 16, "image_size", self.image_size, "must be >= 16")
        check(self.classes >= 2, "classes", self.classes, "must be >= 2")
        check(1 <= self.captions_per_image <= 100, "captions_per_image", self.captions_per_image,
              "must be in [1, 100]")
        check(self.distractor_rate >= 0, "distractor_rate", self.distractor_rate, "must be >= 0")
        check(0 <= self.generic_caption_rate <= 1, "generic_caption_rate", self.generic_caption_rate,
              "must be in [0, 1]")
        check(min(self.split) >= 0 and abs(sum(self.split) - 1) < 1e-6 and self.split[0] > 0, "split",
              list(self.split), "three fractions >= 0 (train > 0) that sum to 1")
        check(self.planted_duplicates >= 0, "planted_duplicates", self.planted_duplicates, "must be >= 0")


# Safety caps: the library defaults (pir.data.images, pir.data.download) and DataConfig's.
# The most pixels (width x height) one image may decode to, checked from its header before decoding
# (docs/recipes-and-data.md, "Image size cap"). 2**27 = 134 M admits a whole Sentinel-2 10 m tile (10980 x 10980 =
# 121 M) and the usual aerial tiles (10000 x 10000 and below), and refuses a file declaring 40000 x 40000
# (1.6 G pixels, 4.5 GiB as 8-bit RGB). At the cap an 8-bit RGB image takes 384 MiB, its float stretch
# 1.5 GiB: what a laptop can afford. Raised per call (max_pixels), data.max_image_pixels, --max-pixels.
DEFAULT_MAX_PIXELS = 2 ** 27
# What one archive may expand to, from its members' declared sizes, checked before anything is written
# (docs/recipes-and-data.md, "Downloads and archives"). 64 GiB leaves room for big satellite archives (RSICD and
# RSITMD are 0.5-1 GB); 100x is far above what image archives compress (JPEG, PNG and compressed TIFF
# barely shrink, caption JSON ~10x) and far below a zip bomb (1000x and more). Raised per call
# (max_bytes, max_ratio), by data.max_archive_bytes / data.max_archive_ratio, and pir index's flags.
DEFAULT_MAX_ARCHIVE_BYTES = 64 * 2 ** 30
DEFAULT_MAX_ARCHIVE_RATIO = 100.0


@dataclass(frozen=True)
class DataConfig:
    """What ``fetch`` produces and how captions are turned into tokens."""
    dataset: str = "synthetic"      # synthetic | rsitmd | rsicd
    source: str = ""                # local folder/archive or http(s) URL of a real dataset; unused for synthetic
    sha256: str = ""                # expected sha256 of a downloaded archive ("" = do not verify)
    class_list: str = ""            # optional file "filename class" for images with no class in their name
    val_fraction: float = 0.1       # val carved from train (by image, seeded) when the source has no val split
    drop_empty_captions: bool = False  # False: an empty caption stops the import; True: drop it (and captionless images)
    cache_res: int = recipe(128)    # side of the uint8 pixel cache the loaders memory-map
    max_words: int = recipe(30)     # captions are cut to this many words (released configs)
    max_tokens: int = recipe(47)    # and to this many tokens, [CLS]/[SEP] included
    tokenizer: str = recipe("")     # "" = the text model's own when model.text_pretrained, else train WordPiece
                                    # on the train captions; or a HF tokenizer name / local dir / Hub id (pir.hub)
    vocab_size: int = recipe(2000)  # size of the trained WordPiece vocabulary
    exclude_leaked: bool = False    # evaluate drops test images with a near-duplicate in train or val
                                    # (reports/audit.json) before scoring; the report says how many
    # sharded corpora (docs/scaling.md, "Sharded corpora"): source may also be a shard folder (shards.json)
    # or a brace pattern of tar shards, /data/rs5m/{00000..00127}.tar; train then streams from them
    eval_source: str = ""           # val/test of a sharded source: "" = its own val-/test- shards; else a dataset
                                    # folder/archive/URL (read as data.dataset) or a shard folder
    samples_per_epoch: int = 0      # streamed train pairs per epoch over all ranks (0 = the manifest's count;
                                    # required for a bare pattern)
    shuffle_buffer: int = 2000      # streamed pairs (encoded) each loader worker holds to shuffle them
    # safety caps (docs/recipes-and-data.md, "Image size cap", "Downloads and archives")
    max_image_pixels: int = DEFAULT_MAX_PIXELS   # width x height one image may decode to, checked from its header
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES   # total an archive source may extract to (declared sizes)
    max_archive_ratio: float = DEFAULT_MAX_ARCHIVE_RATIO  # and at most this many times the archive's own size

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check(self.sha256 == "" or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None, "sha256",
              self.sha256, "a 64-hex-digit sha256 or empty")
        check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "must be in [0, 1)")
        check(self.cache_res >= 16, "cache_res", self.cache_res, "must be >= 16")
        check(self.max_words >= 1, "max_words", self.max_words, "must be >= 1")
        check(self.max_tokens >= 3, "max_tokens", self.max_tokens, "must be >= 3 ([CLS], a word, [SEP])")
        check(self.vocab_size >= 100, "vocab_size", self.vocab_size, "must be >= 100")
        check(self.samples_per_epoch >= 0, "samples_per_epoch", self.samples_per_epoch, "must be >= 0")
        check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, "must be >= 1")
        check(self.max_image_pixels >= 1, "max_image_pixels", self.max_image_pixels, "must be >= 1")
        check(self.max_archive_bytes >= 1, "max_archive_bytes", self.max_archive_bytes, "must be >= 1")
        check(self.max_archive_ratio >= 1, "max_archive_ratio", self.max_archive_ratio, "must be >= 1")
