"""The text an ``llm-subnet`` job scores subnets on, tokenized the parent's way.

A :class:`Corpus` has three splits: ``calibration`` (importance scores and reformation),
``fit`` (the search fitness ``ppl``) and ``test`` (``ppl_test``, ``ppl_reformed``). The
default is the built-in corpus (the standard library's source, :mod:`spaces.llm.data`) in
bytes, as the project's parents were trained. A job may name its own text per split instead:

* a text file (``.txt``, ``.md``, ... : read as UTF-8);
* JSON Lines (``.jsonl``): one object per line, its ``text_field`` (default ``text``);
* Parquet (``.parquet``): the ``text_field`` column (read with pyarrow);
* a folder of such files (sorted by name);
* a ``datasets`` folder written by ``save_to_disk`` (one split; read with pyarrow).

Text is tokenized with the parent's tokenizer: ``tokenizer.json`` through ``tokenizers``
(what ``save_pretrained`` writes for every fast tokenizer), else ``AutoTokenizer`` on the
folder; ``bytes`` (UTF-8 bytes as ids 0-255) for byte-level models. Each token's share of
the text in bytes is kept, so a perplexity per byte compares two tokenizers on the same text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InvalidConfigError

__all__ = ["Corpus", "Tokenizer", "load_tokenizer", "read_texts", "SPLIT_KEYS"]

SPLIT_KEYS = {"calibration": "calibration_data", "fit": "fit_data", "test": "test_data"}
_TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", ".py")


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer as the corpus uses it: ``name`` (``bytes`` or the file it came from),
    its vocabulary size and ``encode(text) -> (ids, bytes per token)``."""

    name: str
    vocab_size: int
    _impl: Any = field(default=None, compare=False, hash=False, repr=False)

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        data = text.encode("utf-8", errors="replace")
        if self._impl is None:
            ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
            return ids, np.ones(len(ids), dtype=np.float32)
        kind, tok = self._impl
        if kind == "tokenizers":
            enc = tok.encode(text, add_special_tokens=False)
            ids, offsets = np.asarray(enc.ids, dtype=np.int64), enc.offsets
        else:  # a transformers tokenizer
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = np.asarray(enc["input_ids"], dtype=np.int64), enc["offset_mapping"]
        # bytes per token from its character span; a token sharing a span (byte fallback) gets its share
        char_bytes = np.array([len(ch.encode("utf-8", errors="replace")) for ch in text] + [0], dtype=np.float32)
        cum = np.concatenate(([0.0], np.cumsum(char_bytes)))
        spans = np.array([(a, b) for a, b in offsets], dtype=np.int64).reshape(-1, 2)
        nbytes = cum[spans[:, 1]] - cum[spans[:, 0]]
        total = float(len(data))
        if nbytes.sum() > 0:
            nbytes = nbytes * (total / nbytes.sum())  # overlapping spans: the text's bytes, counted once
        return ids, nbytes.astype(np.float32)


BYTES = Tokenizer("bytes", 256)


def load_tokenizer(source: str | Path | None) -> Tokenizer:
    """``bytes`` (``None`` or ``"bytes"``), a ``tokenizer.json`` file, or a folder with one
    (or one that ``AutoTokenizer`` reads)."""
    if source is None or str(source) == "bytes":
        return BYTES
    return _load_tokenizer(str(Path(source).expanduser().resolve()))


@lru_cache(maxsize=8)
def _load_tokenizer(path: str) -> Tokenizer:
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if file.is_file() and file.suffix == ".json":
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:  # pragma: no cover - the importers extra is missing
            raise InvalidConfigError("space.tokenizer", path, "a tokenizer.json with the tokenizers package installed "
                                     "(pip install 'nas-service[importers]')") from None
        try:
            tok = HFTokenizer.from_file(str(file))
        except Exception as e:  # its own error types: a file that is not a tokenizer
            raise InvalidConfigError("space.tokenizer", path, f"a tokenizer.json tokenizers can read ({e})") from None
        return Tokenizer(str(file), tok.get_vocab_size(with_added_tokens=True), ("tokenizers", tok))
    if p.is_dir():
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as e:
            raise InvalidConfigError("space.tokenizer", path, "a folder with tokenizer.json or files AutoTokenizer "
                                     f"reads ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        return Tokenizer(str(p), len(tok), ("transformers", tok))
    raise InvalidConfigError("space.tokenizer", path, "'bytes', a tokenizer.json file, or a folder with one")


def read_texts(source: str | Path, field: str, key: str) -> list[str]:
    """The documents of ``source`` (a file or a folder of files); errors name ``key``."""
    p = Path(source).expanduser()
    if not p.exists():
        raise InvalidConfigError(key, str(source), "an existing text, .jsonl or .parquet file, or a folder of them")
    if p.is_dir() and (p / "dataset_dict.json").is_file():
        splits = sorted(d.name for d in p.iterdir() if (d / "state.json").is_file())
        raise InvalidConfigError(key, str(source), f"one split's folder of this DatasetDict ({', '.join(splits)}), "
                                 f"e.g. {p / (splits[0] if splits else 'train')}")
    if p.is_dir() and (p / "state.json").is_file():
        docs = [d for d in _read_saved_dataset(p, field, key) if d]
        if not docs:
            raise InvalidConfigError(key, str(source), "a dataset that holds text (this holds none)")
        return docs
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    docs: list[str] = []
    for f in files:
        docs += _read_file(f, field, key)
    docs = [d for d in docs if d]
    if not docs:
        raise InvalidConfigError(key, str(source), "files that hold text (this holds none)")
    return docs


def _read_saved_dataset(folder: Path, field: str, key: str) -> list[str]:
    """The ``field`` column of a ``datasets`` ``save_to_disk`` folder: the Arrow stream files
    its ``state.json`` lists, read with pyarrow (the datasets package is not needed)."""
    import pyarrow as pa

    try:
        files = [folder / f["filename"] for f in json.loads((folder / "state.json").read_text())["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidConfigError(key, str(folder), f"a datasets save_to_disk folder whose state.json lists its "
                                 f"_data_files ({type(e).__name__}: {e})") from None
    out: list[str] = []
    for f in files:
        try:
            with pa.memory_map(str(f)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowInvalid) as e:
            raise InvalidConfigError(key, str(f), f"an Arrow file save_to_disk wrote ({e})") from None
        if field not in table.column_names:
            raise InvalidConfigError(key, str(folder), f"a dataset with a column {field!r} (space.text_field); its "
                                     f"columns: {', '.join(table.column_names)}")
        out += [t for t in table.column(field).to_pylist() if isinstance(t, str)]
    return out


def _read_file(f: Path, field: str, key: str) -> list[str]:
    if f.suffix == ".jsonl":
        out = []
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise InvalidConfigError(key, f"{f}:{n}", f"one JSON object per line ({e})") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                have = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise InvalidConfigError(key, f"{f}:{n}", f"objects with a text field {field!r} (space.text_field); "
                                         f"this line has {have}")
            out.append(row[field])
        return out
    if f.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(f).names
        if field not in names:
            raise InvalidConfigError(key, str(f), f"a Parquet file with a column {field!r} (space.text_field); "
                                     f"its columns: {', '.join(names)}")
        return [t for t in pq.read_table(f, columns=[field]).column(field).to_pylist() if isinstance(t, str)]
    if f.suffix in _TEXT_SUFFIXES or not f.suffix:
        return [f.read_text(encoding="utf-8", errors="replace")]
    return []  # other files in a folder (a README's images, a lock file): not text


class Corpus:
    """Token ids and bytes per token of each split, for one tokenizer; ``sources`` maps a
    split to a path (``None``: the built-in corpus)."""

    def __init__(self, tokenizer: Tokenizer, sources: dict[str, str | None], text_field: str = "text") -> None:
        self.tokenizer, self.sources, self.field = tokenizer, dict(sources), text_field

    def describe(self, split: str) -> str:
        src = self.sources.get(split)
        return f"{src or 'the built-in corpus'} ({split})"

    def tokens(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        src = self.sources.get(split)
        return _tokens(src, "calibration" if split == "fit" else split, self.field, f"space.{SPLIT_KEYS[split]}",
                       self.tokenizer)

    def windows(self, split: str, n: int, length: int, seed: int = 0):
        """``(ids (n, length + 1), bytes of each window's predicted tokens (n,))``: fixed,
        evenly spread windows (``seed`` 0) or random ones, the same on every call."""
        import torch

        ids, nbytes = self.tokens(split)
        span = len(ids) - length - 1
        if span < n:
            raise InvalidConfigError(f"space.{SPLIT_KEYS[split]}", self.sources.get(split) or "the built-in corpus",
                                     f"text of at least {n} windows of {length + 1} tokens; {self.describe(split)} "
                                     f"has {len(ids)} tokens (ask for fewer or shorter windows, or give more text)")
        starts = np.linspace(0, span, n).astype(np.int64) if seed == 0 else \
            np.random.default_rng(seed).integers(0, span, n)
        idx = starts[:, None] + np.arange(length + 1)[None]
        return torch.from_numpy(ids[idx]), torch.from_numpy(nbytes[idx[:, 1:]].sum(axis=1).astype(np.float64))


@lru_cache(maxsize=12)
def _tokens(src: str | None, split: str, field: str, key: str, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    if src is None:
        if tokenizer is BYTES:  # the built-in corpus as the project's parents read it: one byte a token
            from .data import split_tokens

            ids = split_tokens(split).astype(np.int64)
            return ids, np.ones(len(ids), dtype=np.float32)
        from .data import split_files

        docs = []
        for f in split_files()[split]:
            try:
                docs.append(f.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    else:
        docs = read_texts(src, field, key)
    try:
        parts = [tokenizer.encode(d) for d in docs]
    except Exception as e:  # tokenizers raises its own plain Exception (an unknown unk token, ...)
        raise InvalidConfigError("space.tokenizer", tokenizer.name, f"a tokenizer that encodes the text ({e})") from None
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    nbytes = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    return ids, nbytes
