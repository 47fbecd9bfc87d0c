"""AdamW parameter groups, the warm-up + linear/cosine schedules, and gradient-norm clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pir.config import TrainConfig, from_mapping, model_config
from pir.data.text import ClipTokenizer, tokenize
from pir.models import create_model
from pir.training.trainer import train_step
from pir.training.optim import lr_factor, make_optimizer, make_scheduler, param_groups, warmup_length


def test_groups_exclude_biases_and_norms_and_frozen_prior(tiny_model_cfg):
    model = create_model(tiny_model_cfg)
    decay, no_decay = param_groups(model, weight_decay=0.01)
    decay_ids = {id(p) for p in decay["params"]}
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert not decay_ids & no_decay_ids
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            assert id(module.weight) in no_decay_ids and id(module.bias) in no_decay_ids
        if isinstance(module, nn.Linear) and module.weight.requires_grad:
            assert id(module.weight) in decay_ids
            if module.bias is not None:
                assert id(module.bias) in no_decay_ids
    assert id(model.temp) in no_decay_ids
    # the frozen scene prior is not optimised at all
    prior_ids = {id(p) for p in model.scene_prior.parameters()}
    assert not prior_ids & (decay_ids | no_decay_ids)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for g in (decay, no_decay) for p in g["params"])


def test_optimizer_takes_recipe_from_config():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    cfg = TrainConfig(lr=1e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05)
    optimizer = make_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.8, 0.9) and optimizer.defaults["eps"] == 1e-6
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 3]


def test_schedule_warms_up_then_decays_linearly_to_zero():
    factor = lr_factor(total_steps=100, warmup_steps=warmup_length(100, warmup_fraction=0.1))
    values = [factor(step) for step in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:10], values[1:10]))           # rising during warm-up
    assert all(a > b for a, b in zip(values[10:100], values[11:101]))       # then strictly falling
    assert values[55] == pytest.approx(0.5) and values[100] == 0.0


def test_scheduler_drives_optimizer_lr():
    layer = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1.0)
    scheduler = make_scheduler(optimizer, 20, TrainConfig(warmup_fraction=0.1))
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(1 / 18) and optimizer.param_groups[0]["lr"] == 0.0


def test_warmup_steps_win_over_the_fraction():
    assert warmup_length(100, warmup_fraction=0.1) == 10
    assert warmup_length(100, warmup_fraction=0.1, warmup_steps=25) == 25      # > 0 wins
    assert warmup_length(100, warmup_fraction=0.001) == 1                       # a fraction > 0: at least 1 step
    assert warmup_length(100, warmup_fraction=0.0) == 0
    factor = lr_factor(100, warmup_steps=25)
    assert factor(0) == pytest.approx(1 / 25) and factor(24) == 1.0 and factor(25) == 1.0
    with pytest.raises(ValueError, match="train.warmup_steps = -1: must be >= 0"):
        from_mapping(TrainConfig, {"warmup_steps": -1}, "train")


def test_cosine_schedule_endpoints_and_midpoint():
    factor = lr_factor(total_steps=110, warmup_steps=10, schedule="cosine")
    assert [factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])    # the same linear warm-up
    assert factor(10) == 1.0 and factor(60) == pytest.approx(0.5) and factor(110) == pytest.approx(0.0)
    assert factor(35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))      # open_clip's cosine_lr
    values = [factor(s) for s in range(10, 111)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert factor(35) > lr_factor(110, 10, "linear")(35)                      # cosine stays higher early on
    with pytest.raises(ValueError, match="train.schedule = 'step': choose from linear, cosine"):
        from_mapping(TrainConfig, {"schedule": "step"}, "train")


def test_scheduler_follows_the_configured_schedule():
    layer = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=2.0)
    scheduler = make_scheduler(optimizer, 12, TrainConfig(warmup_steps=2, warmup_fraction=0.5, schedule="cosine"))
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([1.0, 2.0, 2.0]) and lrs[7] == pytest.approx(1.0)   # midpoint of 10 decay steps
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_default_schedule_is_the_released_linear_one():
    # the cpu and paper recipes keep their values: warm-up over a tenth of the run, linear decay
    cfg = TrainConfig()
    assert (cfg.schedule, cfg.warmup_steps, cfg.warmup_fraction) == ("linear", 0, 0.1)
    factor = lr_factor(160, warmup_length(160, cfg.warmup_fraction, cfg.warmup_steps), cfg.schedule)
    assert [factor(s) for s in (0, 15, 16, 88, 160)] == [1 / 16, 1.0, (160 - 16) / 144, (160 - 88) / 144, 0.0]


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def _norm(grads: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


@pytest.mark.parametrize("preset", ["tiny", "clip-tiny"])
def test_grad_clip_scales_the_global_gradient_norm(preset, tiny_data):
    _, wordpiece = tiny_data
    cfg = (model_config("tiny", image_size=56, swin_depths=(1, 1), swin_heads=(1, 2), text_layers=1, embed_dim=64,
                        heads=2, vocab_size=len(wordpiece), max_tokens=24) if preset == "tiny"
           else model_config("clip-tiny", max_tokens=77))
    tokenizer = wordpiece if preset == "tiny" else ClipTokenizer()
    torch.manual_seed(0)
    model = create_model(cfg)
    ids, mask = tokenize(tokenizer, ["a plane", "two bridges over water", "a dense forest", "a beach"], cfg.max_tokens)
    batch = {"images": torch.randint(0, 256, (4, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8),
             "input_ids": ids, "attention_mask": mask, "image_ids": torch.arange(4), "labels": torch.tensor([0, 1, 0, 1])}
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)      # the weights stay put between the two steps
    torch.manual_seed(1)
    train_step(model, batch, frozen, torch.device("cpu"), "fp32")
    raw = _grads(model)
    limit = _norm(raw) / 10
    torch.manual_seed(1)                                       # the same dropout masks
    train_step(model, batch, frozen, torch.device("cpu"), "fp32", grad_clip=limit)
    clipped = _grads(model)
    assert _norm(clipped) == pytest.approx(limit, rel=1e-4)   # over every trainable tensor
    if preset == "clip-tiny":
        assert model.clip.logit_scale.grad is not None        # CLIP's learnable temperature is clipped with the rest
    for before, after in zip(raw, clipped):
        torch.testing.assert_close(after, before / 10, rtol=1e-4, atol=1e-12)   # one factor for all: direction kept
