"""The ``data:`` section of a config: one :class:`DataSpec` per phase, Caffe's ``data_param`` and
``transform_param`` flattened into one mapping.

.. code-block:: yaml

    data:
      train: {source: mnist, batch_size: 64, shuffle: true, scale: 0.00390625}
      test:  {source: mnist, batch_size: 100, scale: 0.00390625}

``source`` is a built-in set (``mnist``, ``digits``, ``spirals``, ``blobs``) or a path: ``.npz``,
``.npy`` (labels in the file named by ``labels``), ``.csv`` (label column ``label_column``), MNIST IDX
files (``*-ubyte`` or ``*.idx``, plain or ``.gz``; labels next to them or named by ``labels``), a folder
of images with one sub-folder per class, ``.h5``/``.hdf5`` (Caffe's HDF5Data: datasets ``data`` and
``label``) or a ``.txt`` list of such files, and Caffe's own formats (:mod:`tfconf.data.caffe_db`,
:mod:`tfconf.data.windows`): an LMDB or LevelDB database of Datum records, an ImageData list of
``path label`` lines, a WindowData windows file. Relative paths are resolved against the config's
folder. ``shape:`` reshapes flat rows; for a database or list it declares the samples' shape (checked
against the data, after the crop), so that ``tfconf validate --shapes`` checks a net whose data is
not here yet.

Transforms follow Caffe's DataTransformer: ``out = (crop(mirror(x)) - mean) * scale``, with the crop
random in train and centred in test, and mirroring in train only.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tfconf.data.builtin import SETS

BUILTIN_SOURCES = tuple(SETS)
SYNTHETIC_SOURCES = tuple(name for name, s in SETS.items() if s.synthetic)
TEXT_SOURCES = ("text", "pystdlib")  # character streams for recurrent nets (tfconf.data.text)
FORMATS = ("npz", "npy", "csv", "idx", "images", "hdf5", "lmdb", "leveldb", "imagelist", "windows")
#: Caffe's WindowData settings (format: windows), with Caffe's defaults
WINDOW_DEFAULTS = {"fg_threshold": 0.5, "bg_threshold": 0.5, "fg_fraction": 0.25, "context_pad": 0, "crop_mode": "warp"}

Split = Literal["train", "test"]


class DataSpec(BaseModel):
    """One data source with its batching and transforms."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="A built-in set (mnist, digits, spirals, blobs) or a file/folder path.")
    format: Optional[Literal[FORMATS]] = Field(  # type: ignore[valid-type]
        None, description="File format; guessed from the path when omitted. lmdb/leveldb: a database of "
        "Caffe Datum records; imagelist: Caffe's ImageData list of `path label` lines."
    )
    split: Optional[Split] = Field(
        None, description="Which split of a built-in set (or of an .npz/.h5 with x_train/x_test); defaults to the phase."
    )
    labels: Optional[str] = Field(None, description="Labels file for .npy data (or IDX labels when not next to the images).")
    label_column: Union[int, str] = Field(-1, description="CSV label column: an index (negative counts from the end) or a header name.")
    delimiter: str = Field(",", description="CSV field delimiter.")
    shape: Optional[list[int]] = Field(
        None, description="Per-sample shape to reshape flat rows to, e.g. [1, 28, 28] for CSV pixels."
    )
    is_color: bool = Field(True, description="Image folders: read as RGB (true) or grayscale (false).")
    new_height: Optional[int] = Field(None, ge=1, description="Image folders: resize every image to this height.")
    new_width: Optional[int] = Field(None, ge=1, description="Image folders: resize every image to this width.")
    root_folder: Optional[str] = Field(None, description="Image lists: prefixed to every listed path, as Caffe's "
                                       "ImageData does (relative to the config's folder).")
    fg_threshold: float = Field(0.5, ge=0, le=1, description="Windows: overlap from which a window is foreground.")
    bg_threshold: float = Field(0.5, ge=0, le=1, description="Windows: overlap below which a window is background.")
    fg_fraction: float = Field(0.25, ge=0, le=1, description="Windows: the share of foreground windows in a batch.")
    context_pad: int = Field(0, ge=0, description="Windows: pixels of context around a window (at the output's scale).")
    crop_mode: Literal["warp", "square"] = Field("warp", description="Windows: warp the box as it is, or make it "
                                                 "square first.")
    cache_mb: Optional[float] = Field(None, gt=0, description="Databases and image lists (read sample by sample): "
                                      "MiB of decoded samples kept in memory (default 256).")

    batch_size: int = Field(64, ge=1)
    shuffle: Optional[bool] = Field(None, description="Reshuffle every epoch; default true in train, never in test.")
    seed: Optional[int] = Field(None, ge=0, description="Seed of shuffling, crops, mirrors and synthetic sets; default the solver's.")

    scale: float = Field(1.0, description="Multiply after mean subtraction (Caffe's transform_param.scale).")
    mean_value: Optional[Union[float, list[float]]] = Field(None, description="Subtracted mean: one value or one per channel.")
    mean_file: Optional[str] = Field(None, description="Subtracted mean image: .npy of shape [C,H,W] (or Caffe .binaryproto).")
    crop_size: int = Field(0, ge=0, description="Square crop: random in train, centred in test; 0 = no crop.")
    mirror: bool = Field(False, description="Random horizontal flip (train only).")

    path: Optional[str] = Field(None, description="source: text: a UTF-8 file, or a folder read file by file in sorted order.")
    seq_len: Optional[int] = Field(None, ge=1, description="Text sources: characters per stream in a batch (T of the [T, N] batches).")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Text sources: the corpus's last fraction that is the test split.")
    max_chars: Optional[int] = Field(None, ge=4, description="Text sources: read at most this many characters (pystdlib: 2,000,000).")
    vocab_size: Optional[int] = Field(None, ge=2, description="Text sources: keep the vocab_size-1 most frequent characters; the rest become U+FFFD.")

    classes: Optional[list[int]] = Field(None, min_length=1, description="Keep only the samples with these labels "
                                         "(labels unchanged), e.g. [0, 1, 2, 3, 4] for a 5-class subset.")

    num_samples: Optional[int] = Field(None, ge=1, description="Synthetic sets: samples in this split (default 1000).")
    num_classes: Optional[int] = Field(None, ge=2, description="Synthetic sets: classes (default 3 spirals, 4 blobs).")
    noise: Optional[float] = Field(None, ge=0, description="Synthetic sets: noise level (default 0.2 spirals, 1.0 blobs).")

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a built-in set (mnist, digits, spirals, blobs) or a path. Received: ''")
        return v

    @field_validator("mean_value")
    @classmethod
    def _mean_value_not_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("must be a number or a non-empty list (one value per channel). Received: []")
        return v

    @field_validator("shape")
    @classmethod
    def _shape_positive(cls, v):
        if v is not None and (not v or any(d < 1 for d in v)):
            raise ValueError(f"must be a non-empty list of positive sizes, e.g. [1, 28, 28]. Received: {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "DataSpec":
        if self.mean_value is not None and self.mean_file is not None:
            raise ValueError("give mean_value or mean_file, not both (as in Caffe)")
        _check_text_keys(self)
        window = [k for k in WINDOW_DEFAULTS if k in self.model_fields_set]
        if window and self.format != "windows":
            raise ValueError(f"{window[0]} applies only to Caffe's WindowData (format: windows)")
        if self.format == "windows" and not self.crop_size:
            raise ValueError("format: windows needs crop_size: the side its windows are warped to (Caffe's too)")
        synthetic = [k for k in ("num_samples", "num_classes", "noise") if getattr(self, k) is not None]
        if synthetic and not self.is_synthetic:
            raise ValueError(
                f"{synthetic[0]} applies only to synthetic sources ({', '.join(SYNTHETIC_SOURCES)}), "
                f"not to source {self.source!r}"
            )
        return self

    @property
    def is_builtin(self) -> bool:
        return self.format is None and self.source in BUILTIN_SOURCES

    @property
    def is_text(self) -> bool:
        return self.format is None and self.source in TEXT_SOURCES

    @property
    def is_synthetic(self) -> bool:
        return self.format is None and self.source in SYNTHETIC_SOURCES


def _check_text_keys(spec: "DataSpec") -> None:
    text_only = [k for k in ("path", "seq_len", "max_chars", "vocab_size") if getattr(spec, k) is not None]
    if not spec.is_text:
        if text_only:
            raise ValueError(f"{text_only[0]} applies only to the text sources ({', '.join(TEXT_SOURCES)}), "
                             f"not to source {spec.source!r}")
        return
    if spec.seq_len is None:
        raise ValueError(f"source {spec.source} needs seq_len: the characters per stream in a batch, e.g. 50")
    if spec.source == "text" and not spec.path:
        raise ValueError("source text needs path: a UTF-8 file or a folder of them")
    if spec.source == "pystdlib" and spec.path is not None:
        raise ValueError("source pystdlib reads the standard library of the running Python; remove path "
                         "(or use source: text with path: for other text)")
    image_keys = [k for k in ("scale", "mean_value", "mean_file", "crop_size", "mirror", "labels", "shape", "classes")
                  if k in spec.model_fields_set]
    if image_keys:
        raise ValueError(f"{image_keys[0]} does not apply to the text source {spec.source!r}")


class DataSection(BaseModel):
    """``data: {train: DataSpec, test: DataSpec}``; either may be missing (a net with an Input layer
    fed by the user, or a test-only config). Further keys name the sources of further test nets
    (Caffe's several ``test_state``s; ``solver.test_nets`` says which net reads which)::

        data:
          train: {source: mnist, batch_size: 100}
          test-on-train: {source: mnist, split: train, batch_size: 100}
          test-on-test: {source: mnist, batch_size: 100}

    Test sources (``test`` and the named ones) are read in a fixed order, never shuffled."""

    model_config = ConfigDict(extra="allow")
    # NOTE: the extra keys are validated as DataSpecs (errors at data.<name>.<key>); that one is read
    # by a test net is checked with the solver section (frontend/config.py), where a misspelt
    # train/test is caught too
    __pydantic_extra__: dict[str, DataSpec] = Field(init=False)

    train: Optional[DataSpec] = None
    test: Optional[DataSpec] = None

    @field_validator("test")
    @classmethod
    def _test_not_shuffled(cls, v: Optional[DataSpec]) -> Optional[DataSpec]:
        if v is not None and v.shuffle:
            raise ValueError(_TEST_SHUFFLED)
        return v

    @model_validator(mode="after")
    def _named_not_shuffled(self) -> "DataSection":
        bad = [InitErrorDetails(type=PydanticCustomError("value_error", _TEST_SHUFFLED), loc=(name, "shuffle"),
                                input=True) for name, spec in self.sources().items() if spec.shuffle]
        if bad:
            raise ValidationError.from_exception_data(type(self).__name__, bad)
        return self

    def for_phase(self, phase: Split) -> Optional[DataSpec]:
        return self.train if phase == "train" else self.test

    def sources(self) -> dict[str, DataSpec]:
        """The named test sources (the keys besides train and test), in the config's order."""
        return dict(self.model_extra or {})

    def source(self, key: str) -> Optional[DataSpec]:
        """``train``, ``test`` or a named test source (None when the section lacks it)."""
        if key in ("train", "test"):
            return getattr(self, key)
        return self.sources().get(key)


_TEST_SHUFFLED = "shuffle: test data is read in a fixed order; remove it or set it to false"
