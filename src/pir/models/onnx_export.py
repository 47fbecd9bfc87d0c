"""A model's two towers as ONNX graphs (``pir export CKPT --onnx DIR``), checked against torch when written.

The folder's layout and how it is read are pir.search.onnx_encoder's (the torch-free side); this module
writes it: ``image.onnx`` (uint8 pixels in, the model's mean/std normalisation inside, unit vectors out),
``text.onnx`` (token ids and mask in, unit vectors out), both with a dynamic batch axis (and a dynamic
token axis for text), ``preprocess.json`` and the tokenizer. docs/search-and-geo.md, "ONNX export
and torch-free indexing".

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript's translation and optimiser),
for every preset. The TorchScript exporter (``dynamo=False``) is five to ten times faster and exports the
PIR presets (tiny, paper) correctly (measured: 2e-7), but not the CLIP ones: under ``no_grad`` open_clip's
``nn.MultiheadAttention`` takes its fused fast path (``aten::_native_multi_head_attention``), which it
cannot export, and with autograd on the traced text graph keeps the trace's caption length in its
reshapes, so onnxruntime fails on any other length. The dynamo exporter gives graphs within ~2e-7 of torch
on PIR tiny and clip-tiny with and without PIR heads, with dynamic batch and token axes, and it is the
exporter torch maintains (the TorchScript one is deprecated). Its cost is time: a tiny-preset tower takes
4-7 s on 2 cores. Export runs in eval mode under ``torch.no_grad`` (with autograd on, torch.export failed
on timm's Swin window reshape).

The check: a batch of generated scenes (pir.data.synthetic, resized by eval_transform) and their captions,
plus a one-image and a one-caption batch (the dynamic axes at their edge), through torch (the code the
Encoder and the evaluate stage use) and through onnxruntime; the largest absolute difference of any
vector component is printed and recorded, and above ``TOLERANCE`` the export is refused. The vectors are
unit length, so float32 rounding in another operator order lands near 1e-7; 1e-4 is a thousand times that,
and a cosine between two vectors then moves by at most sqrt(D) x 1e-4 (2.3e-3 at D = 512), well inside the
gap between neighbours that retrieval metrics see. A graph that is wrong (a constant baked in, a mask
dropped) misses by 1e-2 or more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pir import files
from pir.config import ModelConfig, SyntheticConfig
from pir.errors import first_line
from pir.search import onnx_encoder as fmt

TOLERANCE = 1e-4             # largest |ORT - torch| of a unit-vector component an export may have (module doc)
EXTERNAL_DATA_BYTES = 1 << 30  # a tower above this many bytes of weights keeps them in <graph>.data (protobuf: 2 GiB)
_TRACE_BATCH = 2             # the example batch the graphs are traced with (the check uses other sizes)
_CHECK_SCENES = 5
_LONG_CAPTION = ("a very long caption that goes on and on about the many small grey buildings, the green trees, "
                 "the wide river, the two bridges, the parked cars and the planes beside the long runway " * 3)


class ImageTower(nn.Module):
    """uint8 pixels [B, 3, S, S] -> unit vectors [B, D]: pir.evaluation.embed.encode_images in one graph
    (the same x * 1/(255 std) - mean/std multiply-add as pir.data.transforms.normalize_images)."""

    def __init__(self, model: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.model = model
        std = torch.tensor(cfg.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(cfg.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.float() * self.scale + self.shift)


class TextTower(nn.Module):
    """input_ids, attention_mask int64 [B, T] -> unit vectors [B, D] (model.encode_text)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)


@contextlib.contextmanager
def _export_mode(model: nn.Module):
    """The model as export traces it: eval mode, no autograd, and BERT's padded forward (``fold_text`` plans
    rows from caption lengths on the host: data-dependent Python, same outputs: pir.models.folding)."""
    cfg, was_training = model.cfg, model.training
    model.eval()
    if getattr(cfg, "fold_text", False):
        model.cfg = dataclasses.replace(cfg, fold_text=False)
    try:
        with torch.no_grad():
            yield
    finally:
        model.cfg = cfg
        model.train(was_training)


def _weight_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _export_graph(tower: nn.Module, args: tuple, path: Path, names: Sequence[str], dynamic: tuple) -> float:
    """Export ``tower`` to ``path`` (weights inline, or in <path>.data when big); returns the seconds taken."""
    start = time.perf_counter()
    external = _weight_bytes(tower) > EXTERNAL_DATA_BYTES
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")   # axis-renaming and deprecation notices, not problems of this graph
            program = torch.onnx.export(tower.eval(), args, dynamo=True, input_names=list(names),
                                        output_names=[fmt.OUTPUT], dynamic_shapes=dynamic, external_data=external,
                                        optimize=True, verbose=False)
            program.save(str(path), external_data=external)
    except Exception as exc:   # torch.export's and onnxscript's errors run to pages: keep the first line
        raise ValueError(f"{path.name}: torch.onnx.export failed ({type(exc).__name__}: {first_line(exc, 300)})") \
            from None
    return time.perf_counter() - start


def check_batch(cfg: ModelConfig, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """(uint8 [n, 3, S, S] scenes resized by eval_transform, their captions and a long one): the check's inputs."""
    from pir.data.synthetic import CLASSES, render_image
    from pir.data.transforms import eval_transform

    rng = np.random.default_rng(seed)
    scene = SyntheticConfig(image_size=max(16, min(2 * cfg.image_size, 256)))   # resized down, as real files are
    images, captions = [], []
    for cls in CLASSES[:_CHECK_SCENES]:
        rgb, texts = render_image(cls, scene, rng)
        images.append(eval_transform(cfg.image_size)(torch.from_numpy(rgb).permute(2, 0, 1).contiguous()))
        captions.append(texts[0])
    return torch.stack(images), [*captions, "forest", _LONG_CAPTION]


def _max_diff(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(largest |difference| of a component, smallest cosine of a row pair)."""
    cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    return float(np.abs(ours - reference).max()), float(cosine.min())


def _run(session, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """session.run on the inputs the graph declares (an input the model ignores, such as the mask of a
    text tower that reads no mask, is dropped from the graph by the exporter)."""
    wanted = {i.name for i in session.get_inputs()}
    return session.run([fmt.OUTPUT], {k: v for k, v in inputs.items() if k in wanted})[0]


def check_graphs(folder: Path, model: nn.Module, cfg: ModelConfig, tokenizer: Any) -> dict[str, float]:
    """Compare the two graphs in ``folder`` with torch on :func:`check_batch` (module doc); ValueError above
    ``TOLERANCE``. Returns the max differences and min cosines."""
    from pir.data.text import tokenize
    from pir.evaluation.embed import encode_captions, encode_images

    images, captions = check_batch(cfg)
    image_session = fmt.session(folder / fmt.IMAGE, torch.get_num_threads())
    text_session = fmt.session(folder / fmt.TEXT, torch.get_num_threads())
    report: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            pairs = {"image": [], "text": []}
            for batch in (images, images[:1]):
                pairs["image"].append((_run(image_session, {"pixels": batch.numpy()}),
                                       encode_images(model, batch, "cpu").numpy()))
            for texts in (captions, captions[-2:-1]):
                ids, mask = tokenize(tokenizer, texts, cfg.max_tokens, cfg.max_words)
                pairs["text"].append((_run(text_session, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}),
                                      encode_captions(model, tokenizer, texts, cfg.max_tokens, cfg.max_words,
                                                      "cpu").numpy()))
    finally:
        model.train(was_training)
    for tower, runs in pairs.items():
        diffs = [_max_diff(ours, reference) for ours, reference in runs]
        report[f"{tower}_max_abs_diff"] = max(d for d, _ in diffs)
        report[f"{tower}_min_cosine"] = min(c for _, c in diffs)
    report["images"], report["captions"] = len(images) + 1, len(captions) + 1
    for tower in ("image", "text"):
        if not report[f"{tower}_max_abs_diff"] <= TOLERANCE:   # NaN fails too
            raise ValueError(f"{tower}.onnx differs from torch by {report[f'{tower}_max_abs_diff']:.3g} "
                             f"(> {TOLERANCE:g} allowed) on the check batch; not exported")
    return report


def _tokenizer_files(folder: Path, cfg: ModelConfig, tokenizer: Any) -> dict[str, Any]:
    """Write the tokenizer into ``folder``/tokenizer; what preprocess.json says of it."""
    from pir.data.text import save_tokenizer

    target = folder / fmt.TOKENIZER
    if cfg.is_clip:
        from open_clip.tokenizer import default_bpe

        target.mkdir()
        shutil.copyfile(default_bpe(), target / fmt.CLIP_BPE_FILE)
        return {"kind": fmt.CLIP_BPE, "path": f"{fmt.TOKENIZER}/{fmt.CLIP_BPE_FILE}", "takes_raw_text": True,
                "note": "open_clip's SimpleTokenizer with this vocabulary: <start> + BPE + <end>, cut to max_tokens "
                        "keeping <end> (pir.data.text.ClipTokenizer); the raw caption, cleaned by the tokenizer"}
    save_tokenizer(tokenizer, target)
    return {"kind": fmt.HF_TOKENIZER, "path": fmt.TOKENIZER, "takes_raw_text": False,
            "note": "a transformers tokenizer folder (tokenizer.json for the `tokenizers` library); captions "
                    "normalised first (pir.data.text.normalize_caption, max_words), then [CLS] ... [SEP]"}


def preprocess_spec(cfg: ModelConfig, source: dict[str, Any], preset: str, tokenizer: dict[str, Any],
                    opset: int, hashes: dict[str, str], report: dict[str, float]) -> dict[str, Any]:
    """preprocess.json (the keys pir.search.onnx_encoder.read_spec checks, and what a user needs by hand)."""
    import onnx
    import onnxruntime
    import onnxscript

    size = cfg.image_size
    return {
        "format": fmt.FORMAT, "format_version": fmt.FORMAT_VERSION, "preset": preset, "embed_dim": cfg.embed_dim,
        "image": {"file": fmt.IMAGE, "input": "pixels", "dtype": "uint8", "shape": ["batch", 3, size, size],
                  "layout": "NCHW", "channels": "RGB", "image_size": size,
                  "resize": ("bicubic (Keys a=-0.5), antialiased (the filter stretched by the scale when shrinking), "
                             f"straight to {size} x {size} (no crop, aspect not kept), width first then height, "
                             "uint8 in between: torch's uint8 kernel as eval_transform calls it (torchvision "
                             "F.resize BICUBIC antialias=True); pir.data.eval_resize repeats it in numpy; no resize "
                             f"when the image is already {size} x {size}"),
                  "mean": list(cfg.image_mean), "std": list(cfg.image_std),
                  "normalize": "inside the graph: (pixels / 255 - mean) / std per channel",
                  "output": fmt.OUTPUT, "output_shape": ["batch", cfg.embed_dim], "output_dtype": "float32",
                  "unit_rows": True},
        "text": {"file": fmt.TEXT, "inputs": {"input_ids": "int64", "attention_mask": "int64"},
                 "shape": ["batch", "tokens"], "max_tokens": cfg.max_tokens, "max_words": cfg.max_words,
                 "padding": "right, with the padding id, to the longest caption of the batch; mask 1 on real tokens",
                 "text_mask": cfg.text_mask, "tokenizer": tokenizer, "output": fmt.OUTPUT,
                 "output_shape": ["batch", cfg.embed_dim], "output_dtype": "float32", "unit_rows": True},
        "checkpoint": source,
        "files": dict(sorted(hashes.items())),
        "opset": opset,
        "exporter": "torch.onnx.export(dynamo=True)",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "check": {"tolerance": TOLERANCE, **report},
    }


def write_onnx_export(folder: Path, model: nn.Module, cfg: ModelConfig, tokenizer: Any, source: dict[str, Any],
                      preset: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write image.onnx, text.onnx, the tokenizer and preprocess.json into ``folder`` (an existing, empty folder:
    the caller makes it atomic) and check the graphs against torch. ``tokenizer``: the one the model was trained
    with (pir.search.encoder.search_tokenizer; CLIP presets: pir.data.text.ClipTokenizer). ``source``: what
    preprocess.json records of the checkpoint (path or Hub id, sha256, ...). Returns preprocess.json's dict;
    ``seconds`` (export and check) is added for the caller."""
    import onnx

    from pir.data.text import tokenize

    images, captions = check_batch(cfg)
    ids, mask = tokenize(tokenizer, captions[:_TRACE_BATCH], cfg.max_tokens, cfg.max_words)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    tokens = torch.export.Dim("tokens", min=2, max=cfg.max_tokens)
    seconds = {}
    with _export_mode(model):
        log(f"exporting {fmt.IMAGE} ...")
        seconds["image"] = _export_graph(ImageTower(model, cfg), (images[:_TRACE_BATCH],), folder / fmt.IMAGE,
                                         fmt.INPUTS[fmt.IMAGE], ({0: batch},))
        log(f"exporting {fmt.TEXT} ...")
        seconds["text"] = _export_graph(TextTower(model), (ids, mask), folder / fmt.TEXT, fmt.INPUTS[fmt.TEXT],
                                        ({0: batch, 1: tokens}, {0: batch, 1: tokens}))
    start = time.perf_counter()
    report = check_graphs(folder, model, cfg, tokenizer)
    seconds["check"] = time.perf_counter() - start
    log(f"checked against torch on {report['images']} images and {report['captions']} captions: max |difference| "
        f"image {report['image_max_abs_diff']:.2e}, text {report['text_max_abs_diff']:.2e} "
        f"(allowed {TOLERANCE:g}); min cosine image {report['image_min_cosine']:.7f}, "
        f"text {report['text_min_cosine']:.7f}")
    hashes = {p.name: files.sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    opset = next((o.version for o in onnx.load(str(folder / fmt.IMAGE), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), None)
    spec = preprocess_spec(cfg, source, preset, _tokenizer_files(folder, cfg, tokenizer), opset, hashes, report)
    files.write_json(folder / fmt.PREPROCESS, spec)
    return {**spec, "seconds": seconds}


def check_target(out: Path) -> None:
    """DIR is replaced whole: only an absent or empty folder, or an earlier ``--onnx`` export, may be."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out}: exists and is not a folder; give a new folder for --onnx")
    if out.is_dir() and any(out.iterdir()) and not (out / fmt.PREPROCESS).is_file():
        raise ValueError(f"{out}: a folder with other files in it (not an earlier `pir export --onnx`); "
                         "give an empty or new folder")
    if out.is_dir() and any(out.iterdir()) and not fmt.is_onnx_export(out):
        raise ValueError(f"{out}: its {fmt.PREPROCESS} is not an ONNX export's; give an empty or new folder")
