"""Zero-shot scene classification: class names become prompts, an image takes the class of the closest prompt.

docs/evaluation.md, "Zero-shot scene classification". A class's text embedding is CLIP's prompt ensemble:
the mean of the unit embeddings of its name in every template, re-normalised. An image's scores are the
cosine similarities of its unit embedding (``encode_image``) to those, and its prediction the best one.
The same code scores the evaluate stage's test split (images it has already embedded) and ``pir zeroshot``
(a class-folder dataset or a prepared dataset, embedded here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pir.data.images import ImageRefused
from pir.device import precision_context
from pir.errors import first_line
from pir.evaluation.class_names import default_templates, readable_names, recognise_dataset
from pir.evaluation.classification import confusion_matrix, per_class_accuracy, plot_confusion
from pir.evaluation.embed import encode_captions

TOP_K = 5
TEXT_BATCH = 256          # prompts embedded at once (45 classes x 18 templates = 810 for RESISC45)


class ImageEncoder(Protocol):
    """What embedding images needs of an encoder (pir.search.encoder.Encoder is one)."""

    def preprocess(self, rgb: np.ndarray) -> np.ndarray: ...      # uint8 [H, W, 3] -> uint8 [3, S, S]

    def encode_images(self, batch: np.ndarray) -> np.ndarray: ...  # uint8 [B, 3, S, S] -> float32 [B, D]


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """The templates, each with exactly one ``{}`` where the class name goes (one-line ValueError otherwise)."""
    if not templates:
        raise ValueError("no prompt templates given")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"template {template!r}: needs exactly one {{}} where the class name goes")
    return tuple(templates)


def prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every class, class-major: class c's prompts are rows c*T .. c*T+T-1."""
    return [template.replace("{}", name) for name in class_names for template in templates]


def class_embeddings(encode_texts: Callable[[list[str]], np.ndarray], class_names: Sequence[str],
                     templates: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
    """float32 [classes, D] unit rows: per class, the mean of its unit prompt embeddings, re-normalised."""
    templates = check_templates(templates)
    texts = prompts(class_names, templates)
    embedded = np.concatenate([encode_texts(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)])
    embedded = embedded.astype(np.float32).reshape(len(class_names), len(templates), -1)
    unit = embedded / np.linalg.norm(embedded, axis=-1, keepdims=True)
    mean = unit.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def caption_encoder(model: nn.Module, tokenizer: Any, max_tokens: int, max_words: int,
                    device: torch.device | str, precision: str = "fp32") -> Callable[[list[str]], np.ndarray]:
    """Prompts -> float32 [B, D] through ``model``'s text tower, tokenized as training captions are
    (pir.evaluation.embed.encode_captions) and at the precision the images were embedded at."""
    device = torch.device(device)

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        with precision_context(device, precision):
            return encode_captions(model, tokenizer, texts, max_tokens, max_words, device).numpy()
    return encode


def ranked_classes(scores: np.ndarray) -> np.ndarray:
    """int64 [N, C]: classes by descending score per image; ties keep class order (a stable sort)."""
    return np.argsort(-scores, axis=1, kind="stable")


def classification_report(scores: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy of ``scores`` [N, C] against ``labels`` [N] (0..C-1), in percent.

    ``top1``; ``top5``, a hit within the best min(5, C) classes (``top5_k``); ``mean_per_class``, the mean
    top-1 of the classes with images; ``per_class`` {class: {"images", "top1" (None without images)}};
    ``confusion`` [true][predicted] counts.
    """
    scores, labels = np.asarray(scores, np.float32), np.asarray(labels, np.int64)
    n_classes = len(classes)
    if scores.ndim != 2 or scores.shape != (len(labels), n_classes):
        raise ValueError(f"scores of shape {scores.shape} for {len(labels)} images and {n_classes} classes")
    if len(labels) == 0:
        raise ValueError("no images to classify")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    ranked = ranked_classes(scores)
    rank = np.argmax(ranked == labels[:, None], axis=1)    # 0-based position of the true class
    k = min(TOP_K, n_classes)
    confusion = confusion_matrix(ranked[:, 0], labels, n_classes)
    per_class = per_class_accuracy(confusion)
    counts = confusion.sum(axis=1)
    return {
        "top1": float(np.mean(rank == 0) * 100),
        "top5": float(np.mean(rank < k) * 100),
        "top5_k": k,
        "mean_per_class": float(np.nanmean(per_class)),
        "per_class": {name: {"images": int(n), "top1": None if n == 0 else float(accuracy)}
                      for name, n, accuracy in zip(classes, counts, per_class)},
        "confusion": confusion.tolist(),
    }


def save_confusion(report: dict[str, Any], path: str | Path, title: str) -> None:
    """The report's confusion matrix, row-normalised, as a PNG (written atomically)."""
    classes = list(report["per_class"])
    plot_confusion(np.array(report["confusion"]), classes, path,
                   f"{title}\ntop-1 {report['top1']:.1f}%, top-{report['top5_k']} {report['top5']:.1f}%")


def zeroshot_report(image_emb: np.ndarray, labels: np.ndarray, source_classes: Sequence[str],
                    encode_texts: Callable[[list[str]], np.ndarray], templates: Sequence[str] = (),
                    dataset: str = "") -> dict[str, Any]:
    """Classify unit image embeddings [N, D] among ``source_classes`` (as the dataset spells them; prompts use
    their readable names) with ``templates`` (default: RemoteCLIP's for the recognised dataset).

    The classification report plus ``classes`` (readable), ``source_classes``, ``templates``, ``images``.
    """
    classes = readable_names(source_classes, dataset)
    templates = check_templates(templates or default_templates(recognise_dataset(source_classes, dataset)))
    scores = np.asarray(image_emb, np.float32) @ class_embeddings(encode_texts, classes, templates).T
    report = classification_report(scores, labels, classes)
    return {**report, "classes": classes, "source_classes": list(source_classes), "templates": list(templates),
            "images": int(len(labels))}


def split_zeroshot(image_emb: np.ndarray, labels: np.ndarray, source_classes: Sequence[str],
                   encode_texts: Callable[[list[str]], np.ndarray], dataset: str) -> dict[str, Any] | None:
    """The evaluate stage's ``zeroshot`` entry: the split's images with a known scene (label >= 0) among all
    the dataset's classes, with the default templates; None when there are fewer than two classes or no
    labelled image."""
    known = np.asarray(labels) >= 0
    if len(source_classes) < 2 or not known.any():
        return None
    report = zeroshot_report(np.asarray(image_emb)[known], np.asarray(labels)[known], source_classes,
                             encode_texts, dataset=dataset)
    return {key: report[key] for key in ("top1", "top5", "top5_k", "mean_per_class", "images", "classes",
                                         "templates")}


# --------------------------------------------------------------------------- embedding images

def read_problem(exc: Exception) -> str:
    """Why an image could not be read, in one line."""
    if isinstance(exc, ImageRefused):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read ({exc.strerror or type(exc).__name__})"
    return f"unreadable image ({type(exc).__name__}: {first_line(exc, 200)})"


def embed_images(items: Sequence[Any], read: Callable[[Any], np.ndarray], encoder: ImageEncoder,
                 batch_size: int = 32, progress: bool = True, skip_unreadable: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Read (``read(item)``: uint8 [H, W, 3]), preprocess and embed ``items`` batch by batch.

    Returns (float32 [n_read, D], bool [len(items)] which were read, [(item, reason)] of the others). An
    unreadable item raises ValueError naming it (and any others in its batch) unless ``skip_unreadable``.
    """
    vectors, read_ok, problems = [], np.zeros(len(items), bool), []
    bar = tqdm(total=len(items), desc="zero-shot images", unit="img", disable=not progress, mininterval=1.0)
    for start in range(0, len(items), batch_size):
        pixels = []
        for i in range(start, min(start + batch_size, len(items))):
            try:
                rgb = read(items[i])
            except Exception as exc:  # decoders raise many types for corrupt files: name the file
                problems.append((str(items[i]), read_problem(exc)))
                continue
            pixels.append(encoder.preprocess(rgb))
            read_ok[i] = True
        if problems and not skip_unreadable:
            bar.close()
            more = f" (and {len(problems) - 1} more in this batch)" if len(problems) > 1 else ""
            raise ValueError(f"{problems[0][0]}: {problems[0][1]}{more}")
        if pixels:
            vectors.append(encoder.encode_images(np.stack(pixels)))
        bar.update(min(batch_size, len(items) - start))
    bar.close()
    if not vectors:
        raise ValueError(f"none of the {len(items)} images could be read")
    return np.concatenate(vectors).astype(np.float32), read_ok, problems
