"""AdamW parameter groups and the warm-up + linear-decay schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pir.config import TrainConfig
from pir.models import create_model
from pir.training.optim import make_optimizer, make_scheduler, param_groups, warmup_linear


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
    factor = warmup_linear(total_steps=100, warmup_fraction=0.1)
    values = [factor(step) for step in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:10], values[1:10]))           # rising during warm-up
    assert all(a > b for a, b in zip(values[10:100], values[11:101]))       # then strictly falling
    assert values[55] == pytest.approx(0.5) and values[100] == 0.0


def test_scheduler_drives_optimizer_lr():
    layer = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1.0)
    scheduler = make_scheduler(optimizer, total_steps=20, warmup_fraction=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(1 / 18) and optimizer.param_groups[0]["lr"] == 0.0
