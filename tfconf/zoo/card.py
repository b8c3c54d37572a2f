"""The card of a zoo entry (``model_zoo/<name>/card.yaml``): what the model is, what tfconf measured
on it and with which command, its size, its license, and the sha256 of every file it ships.

.. code-block:: yaml

    name: lenet
    task: image classification
    summary: Caffe's LeNet on the 5,000-digit MNIST sample
    dataset: {name: mnist, split: test, description: the 1,000 held-out digits}
    metrics:
      values: {accuracy: 0.988, loss: 0.0393}
      tolerance: 0.0005                  # |measured - card| allowed by `tfconf zoo test`
      command: tfconf test zoo:lenet     # what measured them (on the shipped weights)
    params: 431080                       # trainable parameters of the built net
    flops: 4600000                       # forward FLOPs per sample (tfconf.zoo.flops)
    license: BSD-2-Clause
    weights: {file: weights.safetensors, sha256: 3f...}
    files: [{file: vocab.json, sha256: 9a...}]   # other shipped files (a vocabulary...)

Cards are read with the config loader and validated here, so a mistake in a card is reported as
``model_zoo/lenet/card.yaml:7:3: metrics.tolerance: ...`` like a mistake in a config.
"""

from __future__ import annotations

import os
import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from tfconf.frontend.schema_base import FiniteFloat, NonNegFloat, StrictModel, located

SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: the longest entry or file name (a folder or file name on every file system)
MAX_NAME = 200
URL_SCHEMES = ("file://", "http://", "https://")


def _plain_file_name(v: str) -> str:
    """A file beside the card: no folders, no '..' (a card never points outside its entry)."""
    if (not v or os.path.basename(v) != v or v in (".", "..") or "\\" in v or "\0" in v
            or len(v) > MAX_NAME):
        shown = v if len(v) <= 60 else v[:57] + "..."
        raise ValueError(f"must be a file name in the entry's folder (no '/' or '..'; no backslash or NUL; at "
                         f"most {MAX_NAME} characters). Received: {shown!r}")
    return v


class CardDataset(StrictModel):
    name: str = Field(description="The data set (a built-in source name where there is one).")
    split: str = Field(description="The split the metrics were measured on.")
    description: Optional[str] = None


class CardMetrics(StrictModel):
    """Values tfconf measured on the shipped weights, and how to measure them again."""

    values: dict[str, FiniteFloat] = Field(min_length=1, description="Test-phase metric → value.")
    tolerance: NonNegFloat = Field(description="Largest |measured - card| that `tfconf zoo test` accepts.")
    command: str = Field(description="The command that measured the values.")
    primary: Optional[str] = Field(None, description="The metric `zoo list` shows (default: the first).")

    @model_validator(mode="after")
    def _primary_known(self):
        if self.primary is not None and self.primary not in self.values:
            raise located(("primary",), f"names no metric of values ({', '.join(self.values)})", self.primary)
        return self

    @property
    def main(self) -> str:
        return self.primary or next(iter(self.values))


class CardReference(StrictModel):
    """A number reported elsewhere (e.g. Caffe's own), for entries that cannot be measured offline."""

    metric: str
    value: FiniteFloat
    source: str = Field(description="Who reported it, on what data.")


class CardFile(StrictModel):
    """A shipped file with its checksum; ``url`` (file://, http://, https://) when it is fetched by `zoo get`."""

    file: str
    sha256: str
    url: Optional[str] = None
    size: Optional[int] = Field(None, ge=0, description="Bytes; bounds the download of a url (needed with a url).")

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        return _plain_file_name(v)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not SHA256.match(v):
            raise ValueError(f"must be 64 lowercase hex digits. Received: {v!r}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v):
        if v is not None and not v.startswith(URL_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(URL_SCHEMES)}. Received: {v!r}")
        return v

    @model_validator(mode="after")
    def _url_needs_size(self):
        if self.url is not None and self.size is None:
            raise located(("size",), "a file fetched from a url needs its size in bytes (the download is "
                          "stopped as soon as more arrive)")
        return self


class CardWeights(CardFile):
    dtype: Optional[Literal["float32", "float16"]] = Field(
        None, description="Stored precision (`zoo build` casts to it; loading casts back); default as trained.")

    @field_validator("file")
    @classmethod
    def _safetensors(cls, v: str) -> str:
        if not v.endswith(".safetensors"):
            raise ValueError("weights are shipped as .safetensors (nothing from the zoo is unpickled). "
                             f"Received: {v!r}")
        return v


class CardBuild(StrictModel):
    """How the shipped weights were made (written by `tfconf zoo build`)."""

    command: str
    iterations: int = Field(ge=0)
    seconds: NonNegFloat = Field(description="Training wall time on the machine that built it.")
    machine: Optional[str] = None


class ZooCard(StrictModel):
    name: str
    task: str
    summary: str
    dataset: CardDataset
    metrics: Optional[CardMetrics] = Field(None, description="Measured on the shipped weights; none for config-only entries.")
    reference: Optional[CardReference] = None
    params: int = Field(ge=0, description="Trainable parameters of the built net.")
    flops: int = Field(ge=0, description="Forward FLOPs per sample (a multiply-add is 2).")
    input_shape: Optional[list[int]] = Field(None, description="Per-sample input shape, e.g. [1, 28, 28].")
    license: str
    weights: Optional[CardWeights] = None
    files: list[CardFile] = Field(default_factory=list, description="Other shipped files (vocabularies...).")
    build: Optional[CardBuild] = None
    notes: Optional[str] = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v) or len(v) > MAX_NAME:
            shown = v if len(v) <= 60 else v[:57] + "..."
            raise ValueError(f"must be letters, digits, '_', '-' or '.' (at most {MAX_NAME}; it is a folder "
                             f"name). Received: {shown!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.metrics is not None and self.weights is None:
            raise located(("metrics",), "measured metrics need shipped weights; a config-only entry gives a "
                          "reference instead")
        if self.weights is not None and self.metrics is None:
            raise located(("metrics",), "an entry with weights needs the metrics measured on them "
                          "(`tfconf zoo build NAME` writes them)")
        names = [f.file for f in self.files] + ([self.weights.file] if self.weights else [])
        for i, f in enumerate(self.files):
            if f.file in ("model.yaml", "card.yaml") or names.count(f.file) > 1:
                raise located(("files", i, "file"), "is listed twice or names the config/card", f.file)
        return self

    @property
    def shipped(self) -> list[CardFile]:
        """Every file with a checksum: the weights first, then the others."""
        return ([self.weights] if self.weights else []) + list(self.files)

    @property
    def has_weights(self) -> bool:
        return self.weights is not None


def load_card(path: str) -> ZooCard:
    """Read and validate a card; raises a located ConfigError."""
    from tfconf.frontend.loader import load_config
    from tfconf.frontend.schema_base import validate_section

    return validate_section(ZooCard, load_config(path))
