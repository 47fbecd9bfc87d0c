"""An ONNX export (``pir export CKPT --onnx DIR``) as an encoder, through onnxruntime, without torch.

The folder (written by pir.models.onnx_export; docs/search-and-geo.md, "ONNX export and
torch-free indexing"):

    preprocess.json   format and version, the image size and resize rule, mean/std, input dtypes and
                      shapes, the tokenizer, the source checkpoint (path or Hub id, preset, sha256), the
                      sha256 of every graph file, opset, versions, the export check's max differences
    image.onnx        pixels uint8 [B, 3, S, S] (resized as eval_transform does) -> embeddings float32
                      [B, D], unit rows; the model's mean/std normalisation is inside the graph
    text.onnx         input_ids, attention_mask int64 [B, T] (pir.data.text.tokenize) -> embeddings [B, D]
    tokenizer/        PIR presets: the HF tokenizer folder the model was trained with; CLIP presets:
                      open_clip's BPE vocabulary file
    *.onnx.data       a graph's weights beside it, only for a tower above 1 GiB (protobuf's 2 GiB limit)

:class:`OnnxEncoder` has what ``pir.search.index.build_index`` uses of pir.search.encoder.Encoder
(preset, dim, cfg.image_size, preprocess, encode_images, tokenizer, extra, source, hub) plus
``index_identity``, so ``pir index SOURCE --onnx DIR`` builds an index where torch is not installed:
nothing here imports torch (tests/search/test_onnx_index.py runs it with torch blocked). The image
preprocessing is pir.data.eval_resize, byte for byte the torch resize on x86 CPUs.

The folder is untrusted input (docs/security.md): only the file names above are opened, whatever
preprocess.json says; every graph file must have the sha256 preprocess.json records (a graph's bytes are
read once, checked, and those bytes go to onnxruntime); a graph whose weights lie in external data files may
name only plain files directly in the folder (no absolute path, no ``..``, no link out), checked before
onnxruntime opens it; no custom-op library is ever registered, so a graph can only use onnxruntime's
built-in operators.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np

from pir import files, hub
from pir.data.eval_resize import eval_resize
from pir.errors import first_line

FORMAT = "pir-onnx"
FORMAT_VERSION = 1
PREPROCESS = "preprocess.json"
IMAGE = "image.onnx"
TEXT = "text.onnx"
TOKENIZER = "tokenizer"
ENGINE = "onnxruntime"
# tokenizer kinds preprocess.json may name
HF_TOKENIZER = "hf-tokenizer"           # a saved transformers tokenizer folder (tokenizer.json inside): PIR presets
CLIP_BPE = "open_clip-bpe"              # open_clip's SimpleTokenizer vocabulary: CLIP presets
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
INPUTS = {IMAGE: ("pixels",), TEXT: ("input_ids", "attention_mask")}
OUTPUT = "embeddings"
_HEX = frozenset("0123456789abcdef")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def read_spec(folder: str | os.PathLike) -> dict[str, Any]:
    """preprocess.json of an ONNX export, checked; one-line ValueError naming the file otherwise."""
    path = Path(folder) / PREPROCESS
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{folder}: not a folder `pir export --onnx` wrote (no {PREPROCESS})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"{path}: not the {PREPROCESS} of `pir export --onnx` (format {FORMAT!r})")
    version = spec.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not one this pir reads (1 to {FORMAT_VERSION}); "
                         "a newer export needs a newer pir")
    image, text, source = spec.get("image"), spec.get("text"), spec.get("checkpoint")
    problems = []
    if not isinstance(spec.get("embed_dim"), int) or spec["embed_dim"] < 1:
        problems.append("embed_dim must be an int >= 1")
    if not isinstance(image, dict) or not isinstance(image.get("image_size"), int) or image["image_size"] < 1:
        problems.append("image.image_size must be an int >= 1")
    if not isinstance(text, dict) or not all(isinstance(text.get(k), int) and text[k] >= 1
                                             for k in ("max_tokens", "max_words")):
        problems.append("text.max_tokens and text.max_words must be ints >= 1")
    elif not isinstance(text.get("tokenizer"), dict) or text["tokenizer"].get("kind") not in (HF_TOKENIZER, CLIP_BPE):
        problems.append(f"text.tokenizer.kind must be {HF_TOKENIZER!r} or {CLIP_BPE!r}")
    if not isinstance(source, dict) or not isinstance(source.get("path"), str) or not _is_sha256(source.get("sha256")):
        problems.append("checkpoint must hold the source checkpoint's path and sha256")
    hashes = spec.get("files")
    if not isinstance(hashes, dict) or not {IMAGE, TEXT} <= set(hashes) or not all(map(_is_sha256, hashes.values())):
        problems.append(f"files must give the sha256 of {IMAGE} and {TEXT}")
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}")
    return spec


def is_onnx_export(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is one ``pir export --onnx`` wrote (its preprocess.json says so)."""
    try:
        return Path(folder).is_dir() and read_spec(folder) is not None
    except ValueError:
        return False


def _node_tensors(nodes) -> Iterator[Any]:
    """Every TensorProto held by node attributes, subgraphs' included (recursively)."""
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(subgraph)


def _tensors(graph) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse ones, node attributes, subgraphs'."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _parse(blob: bytes, label: Path):
    import onnx

    try:
        return onnx.load_model_from_string(blob)
    except Exception as exc:   # protobuf's DecodeError and friends
        raise ValueError(f"{label}: not a readable ONNX graph ({type(exc).__name__}: {first_line(exc, 200)})") \
            from None


def _external_names(model, path: Path) -> list[str]:
    """The external data files ``model`` (parsed from ``path``) names, checked: see :func:`external_files`."""
    import onnx

    folder = path.parent.resolve()
    names = set()
    tensors = [*_tensors(model.graph), *(t for f in model.functions for t in _node_tensors(f.node))]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if (not location or os.path.isabs(location) or ".." in Path(location).parts or "\\" in location
                or target.parent != folder or not target.is_file()):
            raise ValueError(f"{path}: tensor {tensor.name!r} points at external data {location!r}, which is not "
                             f"a file in {folder}; refused (docs/security.md)")
        names.add(target.name)
    return sorted(names)


def external_files(path: Path) -> list[str]:
    """The external data files the graph at ``path`` names (file names inside its folder), checked: each one
    a relative name of a plain file directly in the folder (no absolute path, no ``..``, no link that leads
    out). Parses the protobuf, never the external data; ValueError (one line) on anything else."""
    return _external_names(_parse(Path(path).read_bytes(), path), Path(path))


def load_graph(folder: Path, spec: dict, name: str) -> tuple[str, bytes | Path]:
    """(sha256 of graph ``name`` and its external data files, what onnxruntime should open) once every file
    has the sha256 preprocess.json records (a graph changed since the export, or another export's, is
    refused) and external data names only files in the folder. The graph's bytes are read once, checked,
    parsed and handed to onnxruntime as they are, so the file cannot change between check and load; a graph
    with external data is opened by path (onnxruntime reads the data files beside it, checked here)."""
    path = folder / name
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{path}: missing from the ONNX export (or not a plain file)")

    def checked(item: str, actual: str) -> str:
        if spec["files"].get(item) != actual:
            raise ValueError(f"{folder / item}: not the file `pir export --onnx` wrote (sha256 differs from "
                             f"{PREPROCESS}); export again")
        return f"{item}\0{actual}\n"

    blob = path.read_bytes()
    digest = [checked(name, hashlib.sha256(blob).hexdigest())]   # before the protobuf parser reads it
    data = _external_names(_parse(blob, path), path)
    digest += [checked(item, files.sha256_file(folder / item)) for item in data]
    return hashlib.sha256("".join(digest).encode()).hexdigest(), (path if data else blob)


def default_threads() -> int:
    """onnxruntime's intra-op threads by default: the cores this process may run on (pir.threads)."""
    from pir.threads import available_cores
    return available_cores()


def session(graph: Path | bytes, threads: int, providers: list[str] | None = None, label: Path | None = None):
    """An onnxruntime InferenceSession of ``graph`` (a path, or the bytes :func:`load_graph` checked) on
    ``threads`` intra-op threads (one inter-op thread, sequential execution: the towers are chains), all
    graph optimisations on, CPU unless ``providers``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3   # errors only: no optimiser chatter on stderr
    providers = providers or ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ValueError(f"onnxruntime here has no {', '.join(missing)} "
                         f"(it has {', '.join(ort.get_available_providers())})")
    try:
        return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options, providers=providers)
    except Exception as exc:   # onnxruntime's Fail / InvalidGraph: a damaged or foreign graph
        raise ValueError(f"{label or graph}: onnxruntime cannot load it ({type(exc).__name__}: "
                         f"{first_line(exc, 200)})") from None


class TokenizerFolder:
    """The export's tokenizer folder as the index keeps it: ``save_pretrained(out)`` copies its files
    (pir.search.index saves the tokenizer into each generation, so text queries need only the index and the
    checkpoint), without loading transformers."""

    def __init__(self, folder: Path):
        self.folder = folder

    def save_pretrained(self, out: str | os.PathLike) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(self.folder.iterdir()):
            if item.is_file() and not item.is_symlink():
                shutil.copyfile(item, out / item.name)


class _WordPiece:
    """PIR presets' text path without transformers: the tokenizer folder's tokenizer.json through the
    ``tokenizers`` library, called as pir.data.text.tokenize calls the HF tokenizer (captions normalised
    and cut to max_words words, [CLS]/[SEP] added, cut to max_tokens, padded to the longest)."""

    def __init__(self, folder: Path, max_tokens: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        pad = "[PAD]"
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
            named = config.get("pad_token")
            pad = named.get("content", pad) if isinstance(named, dict) else (named or pad)
        except (OSError, ValueError):
            pass
        pad_id = self.tokenizer.token_to_id(pad)
        if pad_id is None:
            raise ValueError(f"{folder}: the tokenizer has no padding token {pad!r}")
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)

    def __call__(self, texts: list[str], max_words: int) -> tuple[np.ndarray, np.ndarray]:
        from pir.data.text import normalize_caption

        encoded = self.tokenizer.encode_batch([normalize_caption(t, max_words) for t in texts])
        return (np.array([e.ids for e in encoded], np.int64), np.array([e.attention_mask for e in encoded], np.int64))


@dataclass
class OnnxEncoder:
    """Images (and free text) to unit vectors through an ONNX export; see the module doc."""
    folder: Path
    spec: dict[str, Any]
    image_session: Any
    image_sha256: str                      # the image graph and its data files: what the index's rows come from
    threads: int
    providers: list[str] | None = None
    tokenizer: TokenizerFolder | None = None   # PIR presets: copied into each index generation
    hub: dict[str, str] = field(default_factory=dict)
    engine: str = ENGINE
    _text: Any = None                      # (session, tokenize) once text is first encoded

    @property
    def source(self) -> Path:
        return self.folder

    @property
    def dim(self) -> int:
        return int(self.spec["embed_dim"])

    @property
    def preset(self) -> str:
        return str(self.spec.get("preset") or "custom")

    @property
    def cfg(self) -> SimpleNamespace:
        """What callers read of a model config: image_size, max_tokens, max_words, is_clip."""
        text = self.spec["text"]
        return SimpleNamespace(image_size=int(self.spec["image"]["image_size"]), max_tokens=text["max_tokens"],
                               max_words=text["max_words"], is_clip=text["tokenizer"]["kind"] == CLIP_BPE)

    @property
    def extra(self) -> dict[str, Any]:
        """The source checkpoint's entries the export kept (epoch, model_key)."""
        source = self.spec["checkpoint"]
        return {k: source.get(k) for k in ("epoch", "model_key") if k in source}

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] at any size -> uint8 [3, S, S], byte for byte eval_transform's on x86
        (pir.data.eval_resize)."""
        pixels = np.ascontiguousarray(np.asarray(rgb, np.uint8).transpose(2, 0, 1))
        return np.ascontiguousarray(eval_resize(pixels, self.cfg.image_size))

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [B, 3, S, S] (stacked :meth:`preprocess` outputs) -> float32 [B, D], unit rows."""
        batch = np.ascontiguousarray(np.asarray(batch, np.uint8))
        return self.image_session.run([OUTPUT], {"pixels": batch})[0].astype(np.float32, copy=False)

    def _text_path(self):
        if self._text is None:
            _, graph = load_graph(self.folder, self.spec, TEXT)   # checked as the image graph was
            text_session = session(graph, self.threads, self.providers, self.folder / TEXT)
            if self.cfg.is_clip:
                # open_clip's BPE is open_clip's code, and open_clip imports torch: CLIP text needs it installed
                from pir.data.text import ClipTokenizer, tokenize

                clip, cfg = ClipTokenizer(), self.cfg
                tokenize_np = lambda texts: tuple(  # noqa: E731
                    t.numpy() for t in tokenize(clip, texts, cfg.max_tokens, cfg.max_words))
            else:
                wordpiece = _WordPiece(self.folder / TOKENIZER, self.cfg.max_tokens)
                tokenize_np = lambda texts: wordpiece(texts, self.cfg.max_words)  # noqa: E731
            self._text = (text_session, tokenize_np)
        return self._text

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Free text -> float32 [B, D], unit rows, tokenized as pir.data.text.tokenize (PIR presets without
        torch; CLIP presets through open_clip's tokenizer, which needs torch installed)."""
        text_session, tokenize_np = self._text_path()
        ids, mask = tokenize_np(list(texts))
        # a tower that reads no mask (plain CLIP) has no attention_mask input: the exporter drops unused inputs
        wanted = {i.name for i in text_session.get_inputs()}
        feed = {k: v for k, v in (("input_ids", ids), ("attention_mask", mask)) if k in wanted}
        return text_session.run([OUTPUT], feed)[0].astype(np.float32, copy=False)

    def query_text(self, text: str) -> np.ndarray:
        return self.encode_texts([text])[0]

    def query_image(self, rgb: np.ndarray) -> np.ndarray:
        return self.encode_images(self.preprocess(rgb)[None])[0]

    def index_identity(self, out: Path) -> dict[str, Any]:
        """What pir.search.index records of the encoder: the source checkpoint (so ``pir search`` loads it and
        checks its sha256), the engine and the image graph's sha256 (an incremental run reuses rows only from
        the same graph), and the export folder."""
        from pir.search.index import relative_or_absolute

        source = self.spec["checkpoint"]
        recorded = source["path"]
        where = recorded if hub.is_hub_id(recorded) else relative_or_absolute(Path(recorded), out)
        return {"checkpoint": where, "checkpoint_sha256": source["sha256"],
                **({"hub": self.hub} if self.hub else {}), "engine": self.engine,
                "onnx": relative_or_absolute(self.folder, out), "onnx_sha256": self.image_sha256}


def load_onnx_encoder(folder: str | os.PathLike, threads: int | None = None,
                      providers: list[str] | None = None) -> OnnxEncoder:
    """An :class:`OnnxEncoder` of the export at ``folder`` (checked: module doc); onnxruntime on ``threads``
    intra-op threads (default: the cores this process may use)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (an export of `pir export CKPT --onnx DIR`)")
    spec = read_spec(folder)
    image_sha256, graph = load_graph(folder, spec, IMAGE)
    threads = threads or default_threads()
    image_session = session(graph, threads, providers, folder / IMAGE)
    kind = spec["text"]["tokenizer"]["kind"]
    tokenizer = TokenizerFolder(folder / TOKENIZER) if kind == HF_TOKENIZER and (folder / TOKENIZER).is_dir() else None
    hub_commits = spec["checkpoint"].get("hub")
    return OnnxEncoder(folder.resolve(), spec, image_session, image_sha256, threads, providers, tokenizer,
                       dict(hub_commits) if isinstance(hub_commits, dict) else {})
