"""Import RSITMD / RSICD from a local folder into the canonical prepared form.

One module per annotation layout read (see docs/recipes-and-data.md, "Data preparation in detail"):
- ``finetune``: PIR/X-VLM finetune JSON ``<dataset>_{train,val,test}.json``: train has one row per
  caption (``caption`` str), val/test one row per image (``caption`` list);
- ``karpathy``: Karpathy-style ``dataset_<dataset>.json`` (``images[].filename/split/sentences[].raw``);
- ``precomp``: AMFMN precomp text files ``{train,val,test}_filename.txt`` + ``_caps.txt``
  (either k captions per listed file, or one file line per caption line);
- ``parquet``: Hugging Face parquet (``filename``, ``captions``, ``image.bytes``), RSICD's HF layout.

What they share: ``common`` (the raw record, ``ImportProblems``, the checks of one annotation row),
``scenes`` (scene classes), ``folder`` (walking the dataset folder, finding the images). ``dataset``
picks the layout and runs the import: ``locate_dataset``, ``import_dataset``.

When several are present the most complete wins: Karpathy, then finetune JSON
(whose missing train list comes from precomp train minus the val/test images,
as PIR does for RSICD), then precomp, then parquet. A missing val split is
carved from train by image, seeded. Scene class = filename prefix before the
last ``_<number>``; otherwise a ``class_list`` entry; otherwise ``unknown``.

Every problem is collected with the file it concerns; if any is found the
import stops with a one-line ``ValueError`` before anything is written. A
malformed annotation row (not an object, a field missing, null or of the wrong
type, an image path that is absolute or leaves the dataset folder) is one
problem naming the file, the row (0-based index in JSON and parquet, 1-based
line in text files) and the field; all rows are checked before any image is.

The dataset folder is walked without ever leaving it: a link whose target lies
outside the folder is skipped (and named when an image is then missing), and
each real folder is listed once, so link loops (``a -> .``) end. Nothing
outside the folder is opened. Decoding is ``pir.data.images``.
"""

from pir.data.importers.common import ImportProblems, RawImage
from pir.data.importers.dataset import (ImportedDataset, LocatedDataset, import_dataset, locate_dataset,
                                        read_annotations, split_counts)
from pir.data.importers.finetune import read_finetune_json
from pir.data.importers.folder import DatasetFolder
from pir.data.importers.karpathy import read_karpathy_json
from pir.data.importers.parquet import read_parquet
from pir.data.importers.precomp import read_precomp
from pir.data.importers.scenes import read_class_list, scene_from_filename

__all__ = ["DatasetFolder", "ImportProblems", "ImportedDataset", "LocatedDataset", "RawImage", "import_dataset",
           "locate_dataset", "read_annotations", "read_class_list", "read_finetune_json", "read_karpathy_json",
           "read_parquet", "read_precomp", "scene_from_filename", "split_counts"]
