"""A plain re-statement of the official PIR equations (jaychempan/PIR, models/pir.py), for tests only.

Written from the official math, deliberately literal: explicit score matrices
with masked_fill(-1e9), per-sample loops for the sort/filter and the cluster
centres, the official transpose in the affiliation loss. The library's
vectorised, fused code is compared against it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RefMHAtt(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.linear_v, self.linear_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.linear_q, self.linear_merge = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, v, k, q, mask=None):       # official: mask True = masked out
        bs, hd = q.size(0), self.dim // self.heads
        v = self.linear_v(v).view(bs, -1, self.heads, hd).transpose(1, 2)
        k = self.linear_k(k).view(bs, -1, self.heads, hd).transpose(1, 2)
        q = self.linear_q(q).view(bs, -1, self.heads, hd).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)
        if mask is not None:
            scores = scores.masked_fill(mask, -1e9)
        out = torch.softmax(scores, -1) @ v
        return self.linear_merge(out.transpose(1, 2).contiguous().view(bs, -1, self.dim))


def ref_mlp(dim):
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class RefMHSA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.mhatt, self.ffn = RefMHAtt(dim, heads), ref_mlp(dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, mask=None):
        x = self.norm1(x + self.mhatt(x, x, x, mask))
        return self.norm2(x + self.ffn(x))


class RefCroSA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.mhatt_cross, self.ffn = RefMHAtt(dim, heads), ref_mlp(dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, y, y_mask=None):
        y = self.norm1(y + self.mhatt_cross(y, y, x, y_mask))
        return self.norm2(y + self.ffn(y))


class RefHead(nn.Module):
    """The official PIR head modules under the official attribute names."""

    def __init__(self, cfg, vision_width, text_width, conv_width):
        super().__init__()
        d = cfg.embed_dim
        self.cfg = cfg
        self.vision_proj, self.text_proj = nn.Linear(vision_width, d), nn.Linear(text_width, d)
        self.conv_proj = nn.Linear(conv_width, d)
        self.mapping_img = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.instru_num))
        self.mapping_txt = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.cycle_num))
        self.head_img, self.head_txt = nn.Linear(d, d), nn.Linear(d, d)
        self.img_sa = nn.ModuleList(RefMHSA(d, cfg.heads) for _ in range(cfg.instru_num))
        self.img_ca = nn.ModuleList(RefCroSA(d, cfg.heads) for _ in range(cfg.instru_num))
        self.txt_sa = nn.ModuleList(RefMHSA(d, cfg.heads) for _ in range(cfg.cycle_num))
        self.txt_ca = nn.ModuleList(RefCroSA(d, cfg.heads) for _ in range(cfg.cycle_num))
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.temp2 = nn.Parameter(torch.tensor(0.07))

    def vision_fusion(self, swin_out, conv_out):
        """swin_out [B, 50, Cv] (encoder output), conv_out [B, Cc] (pooled prior)."""
        swin_feat = self.vision_proj(swin_out)
        conv_feat = self.conv_proj(conv_out).unsqueeze(1)
        image_g_emb = swin_feat[:, 0, :]
        swin_feat_loc = swin_feat[:, 0:50, :]
        score = F.softmax((swin_feat_loc @ conv_feat.transpose(-2, -1)).squeeze(-1), dim=-1)
        _, sorted_ind = torch.sort(score, dim=1, descending=True)
        rows = [torch.index_select(swin_feat_loc[i], 0, sorted_ind[i]).unsqueeze(0) for i in range(score.shape[0])]
        kept = torch.cat(rows, 0)[:, :self.cfg.filter_size, :]
        conv_feats = conv_feat.expand(kept.shape)
        for i in range(self.cfg.instru_num):
            att = self.img_sa[i](kept)
            kept = self.img_ca[i](self.mapping_img[i](conv_feats), att)
        return F.normalize(image_g_emb + self.head_img(kept[:, 0, :]))

    def text_fusion(self, bert_out, pad_mask=None):
        """bert_out [B, L, Ct]; pad_mask (official convention, True = masked) only for the masked variant."""
        text_feat = self.text_proj(bert_out)
        text_g_emb = text_feat[:, 0, :]
        embs = text_feat
        for i in range(self.cfg.cycle_num):
            att = self.txt_sa[i](embs, pad_mask)
            embs = self.txt_ca[i](self.mapping_txt[i](embs), att, pad_mask)
        return F.normalize(text_g_emb + self.head_txt(embs[:, 0, :]))


def ref_contr_loss(img, txt, idx, temp):
    logits = img @ txt.t() / temp
    idx = idx.view(-1, 1)
    pos = torch.eq(idx, idx.t()).float()
    labels = pos / pos.sum(1, keepdim=True)
    loss_i2t = -torch.sum(F.log_softmax(logits, 1) * labels, 1).mean()
    loss_t2i = -torch.sum(F.log_softmax(logits.t(), 1) * labels, 1).mean()
    return (loss_i2t + loss_t2i) / 2


def ref_affil_loss(img, txt, label, temp2):
    la = torch.eq(label.unsqueeze(1), label.unsqueeze(1).t()).float()
    img_c, txt_c = [], []
    for i in range(img.shape[0]):                       # the official per-sample loop
        mod = la[i].unsqueeze(1)
        mask = mod.repeat(1, img.shape[1])
        n = torch.sum(mod, 0)
        img_c.append((img * mask).sum(0, keepdim=True) / n)
        txt_c.append((txt * mask).sum(0, keepdim=True) / n)
    img_c, txt_c = torch.cat(img_c), torch.cat(txt_c)
    i2c = img @ txt_c.t() / temp2
    t2c = txt @ img_c.t() / temp2
    eye = torch.eye(i2c.shape[0])
    loss_i2t = -torch.sum(F.log_softmax(i2c, 1) * eye, 1).mean()
    loss_t2i = -torch.sum(F.log_softmax(t2c.t(), 1) * eye, 1).mean()   # official transpose
    return (loss_i2t + loss_t2i) / 2


def ref_triplet_loss(img, txt, margin=0.2, max_violation=False):
    scores = img @ txt.t()
    d = scores.diag().view(-1, 1)
    cost_s = (margin + scores - d.expand_as(scores)).clamp(min=0)
    cost_im = (margin + scores - d.t().expand_as(scores)).clamp(min=0)
    eye = torch.eye(scores.size(0)) > .5
    cost_s, cost_im = cost_s.masked_fill(eye, 0), cost_im.masked_fill(eye, 0)
    if max_violation:
        cost_s, cost_im = cost_s.max(1)[0], cost_im.max(0)[0]
    return cost_s.sum() + cost_im.sum()
