"""Caption normalisation, WordPiece training/loading, batch tokenization."""

from __future__ import annotations

import pytest
import torch

from pir.data import text

CAPTIONS = ["Many white planes are parked next to a long terminal.", "Two bridges cross the green river!",
            "a red track surrounds a green football field", "several storage tanks stand in the middle"]


def test_normalize_caption():
    assert text.normalize_caption("Many  WHITE planes, parked; next-to the terminal!") == \
        "many white planes parked next to the terminal"
    assert text.normalize_caption("one two three four", max_words=2) == "one two"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = text.train_wordpiece([text.normalize_caption(c) for c in CAPTIONS], 120, tmp_path_factory.mktemp("t") / "tok")
    return text.load_tokenizer(folder)


def test_trained_tokenizer_is_bert_style(tokenizer):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert tokenizer.pad_token_id == 0
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ids = tokenizer("many white planes")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "many white planes"
    assert isinstance(AutoTokenizer.from_pretrained(tokenizer.name_or_path), PreTrainedTokenizerFast)


def test_tokenize_pads_longest_and_truncates(tokenizer):
    n = len(tokenizer("two")["input_ids"])   # [CLS] two [SEP]
    ids, mask = text.tokenize(tokenizer, ["Two!", CAPTIONS[0]], max_tokens=n + 3)
    assert ids.dtype == torch.long and mask.dtype == torch.long and ids.shape == mask.shape == (2, n + 3)
    assert mask[0].tolist() == [1] * n + [0] * 3 and ids[0, n:].tolist() == [0] * 3
    assert mask[1].all() and ids[1, -1] == tokenizer.sep_token_id   # truncated, [SEP] kept
    short_ids, _ = text.tokenize(tokenizer, ["Two!"], max_tokens=47)
    assert short_ids.shape == (1, n)   # padding to the longest in the batch, not to max_tokens
    assert torch.equal(short_ids[0], ids[0, :n])   # punctuation / case normalised away


def test_unknown_words_map_to_unk(tokenizer):
    ids, _ = text.tokenize(tokenizer, ["zebra"], max_tokens=10)
    assert tokenizer.unk_token_id in ids[0].tolist()


def test_save_copy_and_bad_name(tokenizer, tmp_path):
    copy = text.save_tokenizer(tokenizer, tmp_path / "copy")
    assert text.load_tokenizer(copy)("two bridges")["input_ids"] == tokenizer("two bridges")["input_ids"]
    with pytest.raises(ValueError) as exc:
        text.load_tokenizer(tmp_path / "does-not-exist")
    assert "does-not-exist" in str(exc.value) and "\n" not in str(exc.value)


def test_trained_vocabulary_is_reproducible_and_covers_every_character(tmp_path):
    captions = ["Two planes park near the terminal", "a plane parks", "the terminal is long", "zebra crossing"] * 3
    first = text.load_tokenizer(text.train_wordpiece(captions, 60, tmp_path / "a"))
    second = text.load_tokenizer(text.train_wordpiece(list(reversed(captions)), 60, tmp_path / "b"))
    assert first.get_vocab() == second.get_vocab()
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert first.convert_tokens_to_ids("[PAD]") == 0
    ids = first("parent terminals")["input_ids"]
    assert first.unk_token_id not in ids   # unseen words of seen letters fall back to pieces
