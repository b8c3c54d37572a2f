"""Character-level text for recurrent nets, streamed as truncated back-propagation through time
expects (Caffe's LSTM examples feed the same layout).

.. code-block:: yaml

    data:
      train: {source: pystdlib, batch_size: 32, seq_len: 50}
      test:  {source: pystdlib, batch_size: 32, seq_len: 50}
    # or any UTF-8 file or folder:  {source: text, path: corpus/, batch_size: 32, seq_len: 50}

The corpus is a list of documents (the files of a folder in sorted order, or the Python standard
library's own ``.py`` files for ``pystdlib``), concatenated. Its last ``val_fraction`` of characters
is the ``test`` split, the rest the ``train`` split. The vocabulary is every character of the whole
corpus sorted by code point, or with ``vocab_size: V`` the ``V-1`` most frequent ones plus ``"\\ufffd"``
(U+FFFD) standing for all others. It is saved as ``vocab.json`` in the run folder.

Batches: the split is cut into ``N = batch_size`` streams of equal length ``S``; batch ``i`` holds the
next ``T = seq_len`` characters of every stream::

    data[t, n]  = ids[n·S + k·T + t]          (k = i mod batches_per_epoch)
    label[t, n] = ids[n·S + k·T + t + 1]      (the next character)
    cont[t, n]  = 0 where a sequence starts (t = 0 of an epoch's first batch, and the first
                  character of every document), else 1

so a recurrent layer that carries its state from one batch to the next (and resets it where ``cont`` is
0) sees every stream as one long sequence. All three are ``[T, N]``: data and label int64, cont float32.
In train with ``shuffle`` (the default), every epoch rotates the split by an offset drawn from
``SeedSequence([seed, 0, epoch])`` so that streams start at new places; test reads a fixed order.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sysconfig
from typing import Optional

import numpy as np

from tfconf.data.batcher import SimpleStream
from tfconf.data.errors import DataError

TEXT_SOURCES = ("text", "pystdlib")
UNK = "\ufffd"
#: characters of the standard library read by ``source: pystdlib`` unless ``max_chars`` says otherwise
PYSTDLIB_CHARS = 2_000_000
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


# ------------------------------------------------------------------------------------------ corpus
def pystdlib_root() -> str:
    """The folder of the running Python's standard library (where ``os.py`` lives)."""
    root = sysconfig.get_paths().get("stdlib")
    if not root or not os.path.isfile(os.path.join(root, "os.py")):
        root = os.path.dirname(os.__file__)
    return root


def pystdlib_files(root: Optional[str] = None) -> list[str]:
    """The standard library's ``.py`` files (tests and site-packages left out), in a fixed order that
    mixes packages: sorted by the SHA-1 of their path relative to ``root``."""
    root = root or pystdlib_root()
    found = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
        for f in files:
            if f.endswith(".py"):
                found.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
    found.sort(key=lambda rel: (hashlib.sha1(rel.encode()).hexdigest(), rel))
    return [os.path.join(root, rel) for rel in found]


def _text_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    out = []
    for d, dirs, files in os.walk(path):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x != "__pycache__")
        # (regular files only: a device or a pipe in the folder would be read without end)
        out.extend(os.path.join(d, f) for f in sorted(files)
                   if not f.startswith(".") and os.path.isfile(os.path.join(d, f)))
    if not out:
        raise DataError(f"no files in the text folder {path}")
    return out


def _read(path: str, strict: bool, limit: Optional[int] = None) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="strict" if strict else "replace", newline="") as f:
            return f.read(-1 if limit is None else limit)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        if strict:
            raise DataError(f"cannot read {path}: {e.strerror}") from None
        return None


def read_documents(files, max_chars: Optional[int], strict: bool = True) -> list[str]:
    """The files' texts in order, stopping once ``max_chars`` characters are read (the last one cut)."""
    docs, total = [], 0
    for f in files:
        text = _read(f, strict, None if max_chars is None else max_chars - total)
        if not text:
            continue
        if max_chars is not None and total + len(text) > max_chars:
            text = text[: max_chars - total]
        docs.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    return docs


class Corpus:
    """A whole corpus as ids: ``ids`` int64 [L], ``starts`` bool [L] (True at each document's first
    character), the ``vocab`` (list of characters, index = id) and the train/test boundary."""

    def __init__(self, docs: list[str], val_fraction: float, vocab_size: Optional[int], where: str):
        text = "".join(docs)
        if len(text) < 4:
            raise DataError(f"{where}: the text corpus is empty (or shorter than 4 characters)")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        chars = [chr(int(c)) for c in uniq]
        if vocab_size is not None and vocab_size < len(chars):
            if vocab_size < 2:
                raise DataError(f"vocab_size must be at least 2. Received: {vocab_size}")
            keep = np.argsort(-counts, kind="stable")[: vocab_size - 1]
            kept = sorted(int(k) for k in keep if chars[k] != UNK)[: vocab_size - 1]
            vocab = [chars[k] for k in kept] + [UNK]
            remap = np.full(len(chars), len(vocab) - 1, dtype=np.int64)
            remap[kept] = np.arange(len(kept))
            self.ids = remap[inverse.ravel()]
        else:
            vocab = chars
            self.ids = inverse.ravel().astype(np.int64)
        self.vocab = vocab
        self.starts = np.zeros(len(self.ids), dtype=bool)
        self.starts[np.cumsum([0] + [len(d) for d in docs[:-1]])] = True
        n_val = int(round(len(self.ids) * val_fraction))
        self.boundary = len(self.ids) - n_val
        if val_fraction > 0 and n_val < 2:
            raise DataError(f"{where}: val_fraction {val_fraction} leaves fewer than 2 validation characters")
        if self.boundary < 2:
            raise DataError(f"{where}: val_fraction {val_fraction} leaves fewer than 2 training characters")
        self.ids.setflags(write=False)
        self.starts.setflags(write=False)

    def split(self, split: str):
        """``(ids, starts)`` of the ``train`` or ``test`` part."""
        sl = slice(0, self.boundary) if split == "train" else slice(self.boundary, None)
        ids, starts = self.ids[sl], self.starts[sl].copy()
        if len(starts):
            starts[0] = True
        return ids, starts

    def unigram_bits(self) -> float:
        """Entropy in bits of the training split's character distribution: the loss of a model that
        knows only how often each character occurs."""
        p = np.bincount(self.split("train")[0], minlength=len(self.vocab)).astype(np.float64)
        p = p[p > 0] / p.sum()
        return float(-(p * np.log2(p)).sum())


@functools.lru_cache(maxsize=4)
def _load_corpus(source: str, path: Optional[str], max_chars: Optional[int], val_fraction: float,
                 vocab_size: Optional[int]) -> Corpus:
    if source == "pystdlib":
        files = pystdlib_files()
        limit = PYSTDLIB_CHARS if max_chars is None else max_chars
        return Corpus(read_documents(files, limit, strict=False), val_fraction, vocab_size, "pystdlib")
    if not os.path.exists(path):
        raise DataError(f"text file or folder not found: {path}")
    return Corpus(read_documents(_text_files(path), max_chars), val_fraction, vocab_size, path)


def corpus_for(spec, root: Optional[str] = None) -> Corpus:
    """The (cached) corpus a text :class:`~tfconf.data.schema.DataSpec` names."""
    from tfconf.data.sources import resolve

    path = None
    if spec.source == "text":
        path = os.path.abspath(resolve(spec.path, root))
        if not os.path.exists(path):
            raise DataError(f"path {spec.path}: no such text file or folder ({path})")
    return _load_corpus(spec.source, path, spec.max_chars, float(spec.val_fraction), spec.vocab_size)


# ------------------------------------------------------------------------------------------ vocab
def write_vocab(path: str, vocab: list[str], **extra) -> None:
    from tfconf.io.atomic import atomic_write_bytes

    body = {"format": "tfconf-char-vocab", "unk": UNK if vocab and vocab[-1] == UNK else None,
            "chars": list(vocab), **extra}
    atomic_write_bytes(path, (json.dumps(body, ensure_ascii=True, indent=1) + "\n").encode())


#: the largest vocab.json read (a vocabulary of every Unicode character is about 10 MB)
MAX_VOCAB_BYTES = 64 * 1024 * 1024


def read_vocab(path: str) -> list[str]:
    """The characters of a vocab.json that :func:`write_vocab` wrote; a DataError naming the file when it
    is missing, unreadable, too large, truncated or not such a file."""
    import stat

    damaged = f"{path}: the vocabulary file is damaged or not a vocab.json written by tfconf"
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DataError(f"{path}: the vocabulary file is not a regular file")
            if info.st_size > MAX_VOCAB_BYTES:
                raise DataError(f"{path}: the vocabulary file has {info.st_size:,} bytes, more than a vocab.json "
                                f"may ({MAX_VOCAB_BYTES:,})")
            raw = f.read(MAX_VOCAB_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"vocabulary file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: the vocabulary file is a folder") from None
    except PermissionError:
        raise DataError(f"{path}: the vocabulary file cannot be read: permission denied") from None
    except OSError as e:
        raise DataError(f"{path}: the vocabulary file cannot be read: {(e.strerror or str(e)).lower()}") from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{damaged} (byte {e.start} is not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{damaged} (not valid JSON, truncated or edited: {e.msg.lower()} line {e.lineno}, "
                        f"column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # json's limits: huge numbers, deep nesting
        raise DataError(f"{damaged} ({type(e).__name__ if isinstance(e, RecursionError) else e})") from None
    chars = body.get("chars") if isinstance(body, dict) else None
    if chars is None:
        raise DataError(f"{damaged} (it has no 'chars' list)")
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise DataError(f"{path}: 'chars' must be a list of single characters")
    if len(set(chars)) != len(chars):
        raise DataError(f"{path}: 'chars' lists a character twice")
    return chars


# ------------------------------------------------------------------------------------------ batches
def input_tops(seq_len: Optional[int], batch_size: Optional[int] = None) -> dict:
    """The tops a text source feeds: name → (shape, dtype name)."""
    shape = [seq_len, batch_size]
    return {"data": (shape, "int64"), "label": (list(shape), "int64"), "cont": (list(shape), "float32")}


class TextStream(SimpleStream):
    """An iterator of ``(data, label, cont)`` batches, each ``[T, N]`` (see the module docstring).
    The same interface as :class:`~tfconf.data.batcher.Batcher`: ``batch_at(i)`` is a pure function,
    ``state()``/``restore()`` resume exactly, ``seek(i)`` moves."""

    what = "text"

    def __init__(self, ids, starts, batch_size: int, seq_len: int, *, shuffle: bool = False, seed: int = 0,
                 vocab=None, unigram_bits: Optional[float] = None):
        ids = np.asarray(ids, np.int64)
        starts = np.asarray(starts, bool)
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        self.stream_len = (len(ids) - 1) // self.batch_size
        if self.stream_len < self.seq_len + 1:
            raise DataError(
                f"the text split has {len(ids)} characters: too few for batch_size {batch_size} streams of "
                f"seq_len {seq_len} (needs at least {self.batch_size * (self.seq_len + 1) + 1})")
        self.ids, self.starts = ids, starts
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.vocab = list(vocab) if vocab is not None else None
        self.unigram_bits = unigram_bits
        self.iteration = 0
        self.prefetch = 0

    # -- the Batcher surface
    tops = property(lambda self: input_tops(self.seq_len))

    @property
    def num_samples(self) -> int:
        return len(self.ids)

    @property
    def batches_per_epoch(self) -> int:
        return (self.stream_len - 1) // self.seq_len

    @property
    def output_shape(self) -> tuple:
        return (self.seq_len, self.batch_size)

    @property
    def num_classes(self) -> int:
        return len(self.vocab) if self.vocab is not None else int(self.ids.max()) + 1

    @property
    def epoch(self) -> int:
        return self.iteration // self.batches_per_epoch

    def offset(self, epoch: int) -> int:
        """How far epoch ``epoch`` rotates the split (0 unless shuffled)."""
        if not self.shuffle:
            return 0
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, int(epoch)]))
        return int(rng.integers(len(self.ids)))

    def batch_at(self, iteration: int):
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0. Received: {iteration}")
        epoch, k = divmod(int(iteration), self.batches_per_epoch)
        T, N, S = self.seq_len, self.batch_size, self.stream_len
        pos = (np.arange(N)[None, :] * S + k * T + np.arange(T + 1)[:, None])  # [T+1, N]
        pos = (pos + self.offset(epoch)) % len(self.ids)
        chars = self.ids[pos]
        cont = np.where(self.starts[pos[:-1]], 0.0, 1.0).astype(np.float32)
        if k == 0:
            cont[0] = 0.0
        return chars[:-1], chars[1:], cont

    def __next__(self):
        batch = self.batch_at(self.iteration)
        self.iteration += 1
        return batch

    def seek(self, iteration: int) -> None:
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0. Received: {iteration}")
        self.iteration = int(iteration)

    def state(self) -> dict:
        return {"iteration": self.iteration, "seed": self.seed, "shuffle": self.shuffle,
                "num_samples": self.num_samples, "batch_size": self.batch_size, "seq_len": self.seq_len}



def make_text_dataset(spec, phase: str, root: Optional[str] = None, seed: int = 0) -> TextStream:
    """A :class:`TextStream` over the ``spec.split or phase`` part of the spec's corpus."""
    corpus = corpus_for(spec, root)
    split = spec.split or phase
    if split == "test" and corpus.boundary == len(corpus.ids):
        raise DataError("the test split of a text source is empty: set val_fraction > 0")
    ids, starts = corpus.split(split)
    shuffle = phase == "train" and (spec.shuffle if spec.shuffle is not None else True)
    return TextStream(ids, starts, spec.batch_size, spec.seq_len, shuffle=shuffle, seed=seed,
                      vocab=corpus.vocab, unigram_bits=corpus.unigram_bits())


def bits(nats: float) -> float:
    return nats / math.log(2.0)
