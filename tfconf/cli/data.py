"""``tfconf convert-data``: make a Caffe database (LMDB or LevelDB of Datum records), as Caffe's
``convert_imageset`` does, from images or from any source tfconf reads (the work is in
:mod:`tfconf.data.convert`).

    tfconf convert-data train.txt mnist_train_lmdb --root-folder images/ --shuffle
    tfconf convert-data photos/ photos_lmdb --resize-height 256 --resize-width 256 --encoded
    tfconf convert-data mnist mnist_test_lmdb --split test
"""

from __future__ import annotations

from typing import Optional

import typer

from . import errors

__all__ = ["convert_data"]


def convert_data(
    source: str = typer.Argument(..., help="An image list (`path label` lines, Caffe's ImageData and "
                                 "convert_imageset input), an image folder (one sub-folder per class), or any "
                                 "source tfconf reads: .npz, .npy, CSV, IDX, HDF5, or a built-in set (mnist...)."),
    out: str = typer.Argument(..., help="The database to create (a new folder)."),
    backend: str = typer.Option("lmdb", "--backend", help="lmdb or leveldb (Caffe's --backend)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="The source's format when its name does not tell "
                                      "(imagelist, images, npz, npy, csv, idx, hdf5, lmdb, leveldb)."),
    root_folder: Optional[str] = typer.Option(None, "--root-folder", help="Image lists: prefixed to every "
                                              "listed path (convert_imageset's ROOTFOLDER)."),
    encoded: bool = typer.Option(False, "--encoded", help="Store images as image files (PNG, or the file "
                                 "itself when nothing changes it) instead of raw pixels."),
    encode_type: Optional[str] = typer.Option(None, "--encode-type", help="With --encoded: png or jpg."),
    gray: bool = typer.Option(False, "--gray", help="Images: read as one grey channel."),
    resize_height: Optional[int] = typer.Option(None, "--resize-height", min=1, help="Images: resize to this height."),
    resize_width: Optional[int] = typer.Option(None, "--resize-width", min=1, help="Images: resize to this width."),
    shuffle: bool = typer.Option(False, "--shuffle", help="Write the samples in a random (seeded) order."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of --shuffle."),
    split: str = typer.Option("train", "--split", help="Which split of a built-in set or .npz (train or test)."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Also write the samples' mean image here "
                                       "(.binaryproto, Caffe's compute_image_mean) for transform_param.mean_file."),
):
    """Write a Caffe database (LMDB or LevelDB of Datum records) for Data layers and `format: lmdb`
    sources. Example: tfconf convert-data train.txt train_lmdb --root-folder images/ --shuffle"""

    def go():
        from tfconf.data.convert import convert_data as convert

        return convert(source, out, backend=backend, fmt=fmt, encoded=encoded, encode_type=encode_type, gray=gray,
                       resize_height=resize_height, resize_width=resize_width, shuffle=shuffle, seed=seed,
                       split=split, root_folder=root_folder, mean=mean)

    done = errors.run(go)
    shape = "x".join(str(d) for d in done.shape)
    typer.echo(f"wrote {out}: {done.count} records ({backend}, samples {shape})")
    if mean:
        typer.echo(f"wrote {mean}: the mean of the {done.count} samples")
    if done.classes:
        typer.echo("labels: " + ", ".join(f"{i} = {c}" for i, c in enumerate(done.classes)))
