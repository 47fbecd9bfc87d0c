"""Caption normalisation, WordPiece training/loading, batch tokenization."""

from __future__ import annotations

import pytest
import torch

from pir.data import text

CAPTIONS = ["Many white planes are parked next to a long terminal.", "Two bridges cross the green river!",
            "a red track surrounds a green football field", "several storage tanks stand in the middle"]


# (caption, max_words, what the released pre_caption returns), each worked out by hand from its rules:
# lower-case; delete ,.'!?"()*#:;~; "-" and "/" to spaces; "<person>" to "person"; runs of 2+ whitespace
# characters to one space; a trailing newline, then spaces at both ends, removed; split on single spaces
# and keep max_words words when there are more.
RELEASED_CASES = [
    ("Many  WHITE planes, parked; next-to the terminal!", 30, "many white planes parked next to the terminal"),
    ("It's a plane.", 30, "its a plane"),                              # the apostrophe goes, no space left
    ('"Two" (big) planes*: #1 ~ok?', 30, "two big planes 1 ok"),        # every deleted character at once
    ("a 3/4 view of a car-park", 30, "a 3 4 view of a car park"),
    ("a , b", 30, "a b"),                                               # deleting leaves two spaces: one
    ("planes--", 30, "planes"),                                         # dashes become end spaces: stripped
    ("<Person> walks by <person>s", 30, "person walks by persons"),
    ("planes & cars @ 5% + $3 [x] {y} a_b = c|d", 30, "planes & cars @ 5% + $3 [x] {y} a_b = c|d"),  # kept
    ("Café NEAR the Straße", 30, "café near the straße"),             # unicode kept, lower-cased
    ("İstanbul", 30, "i\u0307stanbul"),                                # str.lower: i + combining dot above
    ("two\tplanes", 30, "two\tplanes"),                                # a lone tab stays
    ("two\t\tplanes", 30, "two planes"),                               # a run of two becomes a space
    ("two\u00a0planes", 30, "two\u00a0planes"),                         # a lone no-break space stays
    ("two \u00a0planes", 30, "two planes"),                             # unicode whitespace runs collapse
    ("a\u3000\u3000b", 30, "a b"),
    ("two planes\n", 30, "two planes"),                                 # the trailing newline goes
    ("two planes\r\n", 30, "two planes"),                               # \r\n is a run: a space, stripped
    ("\ntwo planes", 30, "\ntwo planes"),                                # a leading lone newline stays
    ("two planes\t", 30, "two planes\t"),                               # and so does a trailing lone tab
    ("\t", 30, "\t"),                                                   # a lone tab is not "nothing"
    ("   two   planes   ", 30, "two planes"),
    ("one two three four", 2, "one two"),
    ("one two three", 3, "one two three"),
    ("a, b, c, d", 2, "a b"),                                           # cut after deleting
    ("two\tplanes here", 1, "two\tplanes"),                             # tab-joined words are one word
    ("a  b", 1, "a"),
    ("x" * 3 + " y" * 40, 30, " ".join(["xxx"] + ["y"] * 29)),
]


@pytest.mark.parametrize("caption, max_words, expected", RELEASED_CASES)
def test_normalize_caption_is_the_released_pre_caption(caption, max_words, expected):
    assert text.normalize_caption(caption, max_words) == expected


@pytest.mark.parametrize("caption", ["", "   ", "...!?", "\n", " \n ", "'()'", "~ ~"])
def test_normalize_caption_refuses_what_the_released_one_refuses(caption):
    # pre_caption raises ValueError("pre_caption yields invalid text") when nothing is left
    with pytest.raises(ValueError, match="nothing left after normalisation") as exc:
        text.normalize_caption(caption)
    assert "\n" not in str(exc.value)


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


# --------------------------------------------------------------------------- what each tokenizer reads

RAW = "Many WHITE planes, parked; next-to the terminal!"


def test_wordpiece_reads_normalize_captions_output(tokenizer):
    assert text.model_texts(tokenizer, [RAW], max_words=3) == ["many white planes"]
    ids, mask = text.tokenize(tokenizer, [RAW, "one two three four"], max_tokens=47, max_words=3)
    expected = tokenizer([text.normalize_caption(RAW, 3), "one two three"], padding="longest", return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"]) and torch.equal(mask, expected["attention_mask"])


def test_clip_tokenizer_reads_the_raw_caption_with_open_clips_ids():
    import open_clip

    clip = text.ClipTokenizer()
    assert text.model_texts(clip, [RAW], max_words=3) == [RAW]
    ids, mask = text.tokenize(clip, [RAW, "two bridges"], max_tokens=77, max_words=3)
    theirs = open_clip.tokenize([RAW, "two bridges"])                 # [2, 77], its own cleaning
    assert torch.equal(ids, theirs[:, :ids.shape[1]]) and not theirs[:, ids.shape[1]:].any()
    assert torch.equal(mask, (ids > 0).long())
    normalised = open_clip.tokenize([text.normalize_caption(RAW)])[0]
    assert not torch.equal(ids[0], normalised[:ids.shape[1]])        # punctuation reaches CLIP: "," ";" "-" "!"


def test_clip_captions_are_not_cut_at_max_words():
    import open_clip

    sixty = " ".join(["plane"] * 60)
    ids, mask = text.tokenize(text.ClipTokenizer(), [sixty], max_tokens=77, max_words=30)
    assert int(mask.sum()) == 62 and torch.equal(ids[0], open_clip.tokenize([sixty])[0, :62])   # <start> 60 <end>
