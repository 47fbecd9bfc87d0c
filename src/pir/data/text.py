"""Caption normalisation, caption keys (which captions are the same string) and tokenizers.

``normalize_caption`` is the released ``pre_caption`` (docs/recipes-and-data.md, "Data preparation in detail"): the text PIR's
WordPiece/BERT encoders read. Without a pretrained tokenizer
the fetch stage trains a BERT-style WordPiece vocabulary on the train captions
and saves it as a ``transformers`` fast tokenizer folder, so every later stage
loads either kind the same way: ``AutoTokenizer.from_pretrained``.

CLIP presets tokenize with open_clip's BPE instead (``ClipTokenizer``; its vocabulary ships
inside the open_clip package, so it works offline). ``model_tokenizer`` picks the right one
for a model config: every stage that feeds a model goes through it. open_clip's tokenizer
cleans its own input (``takes_raw_text``), so it gets the raw caption; ``tokenize`` decides
this for every caller.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from pir import files, hub
from pir.errors import first_line

if TYPE_CHECKING:   # torch is imported where tensors are made: save_tokenizer, normalize_caption and the
    import torch    # rest load without it (the ONNX indexing path: pir.search.onnx_encoder)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")   # [PAD] gets id 0, like BERT's vocab
# The released pre_caption's rules (docs/recipes-and-data.md, "Data preparation in detail"): these characters are deleted, every
# other one is kept; runs of two or more whitespace characters (Unicode \s) become one space.
_DELETED = re.compile(r"[,.'!?\"()*#:;~]")
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def normalize_caption(text: str, max_words: int = 30) -> str:
    """The released ``pre_caption(text, max_words)``, quirks included.

    Lower-case; delete ``,.'!?"()*#:;~``; ``-`` and ``/`` become spaces; ``<person>`` becomes
    ``person``; each run of two or more whitespace characters becomes one space; a trailing newline
    and the spaces at both ends go; then, if splitting on single spaces gives more than
    ``max_words`` words, the first ``max_words`` are kept. So a lone tab or newline between words
    stays and joins them into one "word", and accents, digits and other symbols are kept as they are.
    Raises ValueError where the released function does: when nothing is left.
    """
    caption = _DELETED.sub("", text.lower()).replace("-", " ").replace("/", " ").replace("<person>", "person")
    caption = _WHITESPACE_RUN.sub(" ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    if not caption:
        raise ValueError(f"caption {text[:80]!r}: nothing left after normalisation "
                         "(the released pre_caption refuses it too)")
    return caption


def is_empty_caption(text: str) -> bool:
    """Blank, or nothing left after ``normalize_caption`` (``"..."``): a caption no model can read, which
    the importers treat as empty (data.drop_empty_captions) instead of failing later in fetch."""
    if not text.strip():
        return True
    try:
        normalize_caption(text, max_words=10 ** 6)
    except ValueError:
        return True
    return False


def default_caption_key(caption: str) -> str:
    """Normalised caption used to decide that two captions are the same string: the released ``pre_caption``
    without the word cap, PIR's input text. One key for every model, so ``dedup`` scores every model on the
    same distinct strings; a CLIP preset reads raw captions, so there a group's first caption stands for
    captions that differ only in case or deleted punctuation (docs/evaluation.md, "Evaluation protocols").
    The leakage audit (shared caption strings) and the evaluator (duplicate-aware protocols) both use it."""
    return normalize_caption(caption, max_words=10**6)


def caption_keys(captions: Sequence[str], key: Callable[[str], str] = default_caption_key) -> tuple[list[str], np.ndarray]:
    """(normalised string of each caption, id of its distinct string [n_texts]); ids follow sorted order."""
    normalised = [key(c) for c in captions]
    if not normalised:
        return [], np.zeros(0, dtype=np.int64)
    _, key_ids = np.unique(np.asarray(normalised, dtype=str), return_inverse=True)
    return normalised, key_ids.reshape(-1).astype(np.int64)


def model_texts(tokenizer, captions: Sequence[str], max_words: int = 30) -> list[str]:
    """The strings a tokenizer is given: the captions as they are when it cleans its own input
    (``tokenizer.takes_raw_text``, open_clip's BPE: no lower-casing, punctuation or word cap from us),
    else ``normalize_caption``'s output (PIR's WordPiece/BERT, as released)."""
    if getattr(tokenizer, "takes_raw_text", False):
        return list(captions)
    return [normalize_caption(c, max_words) for c in captions]


def wordpiece_vocab(words: Iterable[str], vocab_size: int) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: special tokens, every character (word-initial and
    ``##`` continuation, so nothing is ever [UNK]), then whole words by frequency (ties by spelling).

    tokenizers' WordPieceTrainer breaks frequency ties through a randomly seeded hash map, so its
    vocabulary (and the ids of every token) changes from run to run; this one depends on the
    captions alone, which keeps fetch's output, and everything downstream, reproducible.
    """
    counts = Counter(words)
    chars = sorted({c for word in counts for c in word})
    pieces = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    by_frequency = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    pieces += by_frequency[:max(0, vocab_size - len(pieces))]
    return {piece: i for i, piece in enumerate(pieces)}


def train_wordpiece(captions: Iterable[str], vocab_size: int, out_dir: str | os.PathLike) -> Path:
    """Build a WordPiece vocabulary from ``captions`` and save it as a BertTokenizerFast folder at ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = (word for caption in captions
             for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption)))
    tokenizer = Tokenizer(models.WordPiece(wordpiece_vocab(words, vocab_size), unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    fast = BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=True, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return save_tokenizer(fast, out_dir)


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> Path:
    """``save_pretrained`` into a temp folder beside ``out_dir``, then rename it in: never half a tokenizer."""
    with files.atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def load_tokenizer(name_or_dir: str | os.PathLike, what: str = "tokenizer"):
    """Any HF tokenizer by hub name, local folder or Hub id (``hf-hub:ORG/REPO[/FOLDER][@REVISION]``: that
    snapshot folder of the cache, pir.hub; ``what`` names the setting); one-line error when it cannot be
    loaded (e.g. offline)."""
    from transformers import AutoTokenizer

    source = str(hub.local_path(name_or_dir, what, folder=True)) if hub.is_hub_id(name_or_dir) else str(name_or_dir)
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # HF raises OSError/ValueError with multi-line help; keep the first line
        first = first_line(exc)
        raise ValueError(f"{name_or_dir}: cannot load tokenizer ({first}); "
                         "give a local tokenizer folder or leave data.tokenizer empty to train one") from None


def check_vocabulary(tokenizer, vocab_size: int, where: str | os.PathLike) -> None:
    """The model must have been trained with this tokenizer: any other one maps words to the wrong ids
    (and a smaller one silently, since every id still exists)."""
    if len(tokenizer) != vocab_size:
        raise ValueError(f"{where}: model vocabulary has {vocab_size} ids but the tokenizer has {len(tokenizer)}; "
                         "set data.tokenizer to the tokenizer the model was trained with and rerun fetch")


def tokenize(tokenizer, captions: Sequence[str], max_tokens: int, max_words: int = 30
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize a batch of raw captions: (input_ids, attention_mask) LongTensors [B, L], L = longest <= max_tokens.

    The one place that decides what the text encoder reads (``model_texts``): every caller (the train
    collate, evaluation embeddings, search queries) goes through here. ``max_words`` applies only to
    tokenizers that read normalised text.
    """
    texts = model_texts(tokenizer, captions, max_words)
    encoded = tokenizer(texts, padding="longest", truncation=True, max_length=max_tokens, return_tensors="pt")
    return encoded["input_ids"].long(), encoded["attention_mask"].long()


class ClipTokenizer:
    """open_clip's BPE tokenizer (OpenAI CLIP's 49,408 ids) behind the calling convention ``tokenize`` uses.

    ``tokenizer(texts, padding="longest", truncation=True, max_length=L, return_tensors="pt")`` gives
    {"input_ids", "attention_mask"} [B, <= L]: <start> + BPE + <end>, zeros after, the ids of
    ``open_clip.tokenize`` cut to the longest caption; a caption cut short still ends with <end>
    (open_clip's truncation), whose state is CLIP's text embedding.
    """

    # open_clip's tokenizer cleans its input itself (ftfy, HTML unescape, whitespace, lower case), so it
    # reads the raw caption as CLIP-family models are trained and published (docs/clip-family.md, "CLIP towers").
    takes_raw_text = True

    def __init__(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer
        self.bpe = SimpleTokenizer()
        self.sot, self.eot = self.bpe.sot_token_id, self.bpe.eot_token_id

    def __len__(self) -> int:
        return self.bpe.vocab_size

    def encode(self, text: str, max_length: int) -> list[int]:
        ids = [self.sot, *self.bpe.encode(text), self.eot]
        return ids if len(ids) <= max_length else [*ids[:max_length - 1], self.eot]

    def __call__(self, texts: Sequence[str], padding: str = "longest", truncation: bool = True,
                 max_length: int = 77, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        import torch

        rows = [self.encode(t, max_length) for t in texts]
        width = max(len(r) for r in rows) if padding == "longest" else max_length
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):   # per caption, in the collate (not model code)
            input_ids[i, :len(row)] = torch.tensor(row)
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def model_tokenizer(cfg, folder: str | os.PathLike):
    """The tokenizer model config ``cfg`` was built for: open_clip's BPE for CLIP presets
    (``cfg.is_clip``), else the tokenizer the fetch stage wrote to ``folder``."""
    if getattr(cfg, "is_clip", False):
        return ClipTokenizer()
    return load_tokenizer(folder)
