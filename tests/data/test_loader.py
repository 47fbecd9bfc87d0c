"""The tensor data path: shapes/dtypes, the ops of docs/recipes-and-data.md, "Data preparation in detail", (seed, epoch)-determinism, memmap pickling."""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from tests.prepared_fixture import make_prepared

from pir.config import ModelConfig, TrainConfig
from pir.data import transforms
from pir.data.loader import PixelSource, TrainPairs, eval_images, set_epoch, train_pairs_loader
from pir.data.transforms import (CLIP_MEAN, CLIP_STD, RANDAUG_OPS, RestrictedRandAugment, normalize_images,
                                 train_transform)

TRAIN = TrainConfig(global_batch_size=4, num_workers=0)
MODEL = ModelConfig(image_size=40, max_tokens=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), images=20, image_size=48, classes=3,
                         captions_per_image=3, split=(0.6, 0.2, 0.2), vocab_size=200)


def loader(data, seed=0, train=TRAIN, model=MODEL, **placement):
    prepared, tokenizer = data
    return train_pairs_loader(prepared, prepared.split("train"), tokenizer, train, model, seed=seed, **placement)


def first_batch(train_loader, epoch):
    set_epoch(train_loader, epoch)
    return next(iter(train_loader))


@pytest.mark.parametrize("op", RANDAUG_OPS)
def test_each_randaugment_op_keeps_uint8_shape(op):
    image = torch.randint(50, 150, (3, 32, 32), dtype=torch.uint8)    # low contrast: every op changes it
    out = RestrictedRandAugment(2, 7)._apply(op, image)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert torch.equal(out, image) == (op == "identity")


@pytest.mark.parametrize("negative", [False, True])
def test_fast_ops_equal_torchvision(negative):
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    augment = RestrictedRandAugment(2, 7)
    sign = -1 if negative else 1
    shear = sign * math.degrees(math.atan(0.7 * 0.3))
    expected = {
        "shear_x": F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=[shear, 0.0], fill=[128.0] * 3),
        "translate_y": F.affine(image, angle=0.0, translate=[0, sign * round(0.7 * 10 / 224 * 24)], scale=1.0,
                                shear=[0.0, 0.0], fill=[128.0] * 3),
        "rotate": F.rotate(image, sign * 21.0, fill=[128.0] * 3),
        "sharpness": F.adjust_sharpness(image, 0.7 * 1.8 + 0.1),
    }
    for op, reference in expected.items():
        assert torch.equal(augment._apply(op, image, negative), reference), op


def test_train_transform_crops_to_model_size_as_uint8():
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    out = train_transform(40)(image)
    assert out.shape == (3, 40, 40) and out.dtype == torch.uint8


def test_batches_are_uint8_images_with_tokens_ids_labels(data):
    prepared, _ = data
    batch = first_batch(loader(data), 0)
    assert batch["images"].shape == (4, 3, 40, 40) and batch["images"].dtype == torch.uint8
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[1] <= 16
    train_rows = set(prepared.split("train").image_rows.tolist())
    assert set(batch["image_ids"].tolist()) <= train_rows
    assert batch["labels"].tolist() == [prepared.records[r].label for r in batch["image_ids"].tolist()]


def test_epoch_batches_depend_only_on_seed_and_epoch(data):
    a = first_batch(loader(data), 1)
    torch.manual_seed(1234)                      # unrelated global RNG use must not matter
    torch.rand(100)
    b = first_batch(loader(data), 1)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["image_ids"], b["image_ids"])
    other_epoch = first_batch(loader(data), 2)
    other_seed = first_batch(loader(data, seed=1), 1)
    assert not torch.equal(a["images"], other_epoch["images"])
    assert not torch.equal(a["images"], other_seed["images"])


def test_each_process_loads_its_share_of_the_global_batch(data):
    # train.global_batch_size is split over the processes; the losses gather it back
    global_batch = dataclasses.replace(TRAIN, global_batch_size=8)
    ranks = [first_batch(loader(data, train=global_batch, rank=r, world_size=2), 0)["image_ids"] for r in (0, 1)]
    assert [len(ids) for ids in ranks] == [4, 4]
    assert len(first_batch(loader(data, train=global_batch), 0)["image_ids"]) == 8


def test_workers_give_the_same_batches_as_the_main_process(data):
    in_process = first_batch(loader(data), 3)
    with_workers = first_batch(loader(data, train=dataclasses.replace(TRAIN, num_workers=2)), 3)
    assert torch.equal(in_process["images"], with_workers["images"])
    assert torch.equal(in_process["input_ids"], with_workers["input_ids"])


def test_one_pair_per_image_cycles_through_captions(data):
    prepared, _ = data
    split = prepared.split("train")
    pairs = TrainPairs(prepared, split, train_transform(40), seed=0, pairs_per_image=1)
    assert len(pairs) == split.n_images
    seen = [pairs[(epoch, 0)]["caption"] for epoch in range(3)]
    assert sorted(seen) == sorted(split.captions[i] for i in split.img2txt[0])
    assert len(TrainPairs(prepared, split, train_transform(40), seed=0)) == split.n_texts


def test_eval_images_resize_in_split_order(data):
    prepared, _ = data
    split = prepared.split("val")
    images = eval_images(prepared, split, 32)
    image, row = images[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and row == split.image_rows[1]
    same_size, _ = eval_images(prepared, split, 48)[1]
    assert torch.equal(same_size, torch.from_numpy(np.array(prepared.pixels[row])).permute(2, 0, 1))


def test_normalize_images_uses_clip_statistics():
    mean_image = (torch.tensor(CLIP_MEAN) * 255).round().to(torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = normalize_images(mean_image)
    assert out.dtype == torch.float32 and out.abs().max() < 0.01
    white = normalize_images(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD))
    # the constants are made once per device, not per batch (a blocking host-to-GPU copy each time)
    cpu = torch.device("cpu")
    assert transforms._scale_shift(cpu, CLIP_MEAN, CLIP_STD) is transforms._scale_shift(cpu, CLIP_MEAN, CLIP_STD)


def test_memory_map_pickles_by_file_name(data):
    prepared, _ = data
    assert isinstance(prepared.pixels, np.memmap)
    blob = pickle.dumps(PixelSource(prepared.pixels))
    assert len(blob) < 1000
    restored = pickle.loads(blob)
    assert torch.equal(restored.chw(3), PixelSource(prepared.pixels).chw(3))


def test_max_words_changes_the_tokens_in_training_and_evaluation(data):
    # data.max_words reaches the train collate and the evaluation embedding (it used to stop at fetch)
    from pir.data.loader import PairCollate
    from pir.data.text import tokenize

    prepared, tokenizer = data
    long_caption = {"caption": "one two three four five six seven eight", "image": torch.zeros(3, 4, 4,
                    dtype=torch.uint8), "image_id": 0, "label": 0}
    full = PairCollate(tokenizer, max_tokens=16, max_words=30)([long_caption])["attention_mask"].sum()
    cut = PairCollate(tokenizer, max_tokens=16, max_words=2)([long_caption])["attention_mask"].sum()
    assert cut < full and cut <= 2 * 4 + 2          # two words (a few word pieces each) + [CLS]/[SEP]
    short = first_batch(loader(data, model=dataclasses.replace(MODEL, max_words=2)), 0)["attention_mask"].sum(1)
    normal = first_batch(loader(data), 0)["attention_mask"].sum(1)
    assert (short <= normal).all() and (short < normal).any()
    ids, _ = tokenize(tokenizer, ["one two three"], 16, max_words=1)
    assert ids.shape[1] < tokenize(tokenizer, ["one two three"], 16, max_words=30)[0].shape[1]
