"""``tfconf validate``, ``schema``, ``devices`` and ``draw``: looking at a config and at the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from tfconf.errors import UserError

from . import common, errors


def validate(
    config: str = typer.Argument(..., help="The config (YAML)."),
    set_: Optional[List[str]] = common.SetOpt,
    print_config: bool = typer.Option(False, "--print-config", help="Also print the resolved config."),
    shapes: bool = typer.Option(False, "--shapes", help="Check the net's shapes even where its data is not here "
                                "yet: such a source is taken at its declared shape: [C, H, W]."),
    trust_python: bool = common.TrustOpt,
):
    """Check a config: prints a one-line summary or the located errors (exit code 2)."""
    common.trust(trust_python)

    def go():
        from tfconf.frontend import config as cfgmod

        cfg = common.load_config(config, set_, check=False)
        nets, params = cfgmod.check_net(cfg, absent_data=shapes)
        return cfg, nets, params

    cfg, nets, params = errors.run(go)
    if print_config:
        typer.echo(cfg.loaded.dump())
    n_params = sum(int(__import__("numpy").prod(v.shape.as_list())) for v in params.values()
                   if v.trainable)
    outs = ", ".join(f"{k} {t.shape.as_list()}" for k, t in nets["test"].outputs.items())
    typer.echo(f"{cfg.path}: ok: {cfg.net.name}, {len(cfg.net.layers)} layers, {n_params:,} parameters; "
               f"test outputs: {outs or 'none'}" + (absent_note(cfg) if shapes else ""))


def absent_note(cfg) -> str:
    """What of a config's data is not here yet (its net was checked at the declared shapes)."""
    from tfconf.data.sources import declared

    data = cfg.net.data
    specs = {"train": data.train, "test": data.test} if data is not None else {}
    if data is not None and hasattr(data, "sources"):
        specs.update(data.sources())
    gone = [f"data.{p}" for p, spec in specs.items() if spec is not None and declared(spec, cfg.root)]
    return f" (at the declared shape of {', '.join(gone)}, which is not here yet)" if gone else ""


def schema(out: Optional[str] = typer.Option(None, "-o", "--out", help="Write to this file instead of stdout.")):
    """Write the JSON Schema of configs (for editor completion)."""
    from tfconf.frontend.net_schema import NetConfig

    text = json.dumps(NetConfig.model_json_schema(), indent=2)
    if out:
        Path(out).write_text(text + "\n")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


def devices(
    device_count: Optional[List[str]] = typer.Option(
        None, "--device-count", help="TYPE=N, e.g. CPU=4 for four virtual CPU devices (repeatable)."),
):
    """List the devices the engine sees, with memory and a measured throughput, and below each a
    block like Caffe's `device_query`: a GPU's name, compute capability, memory and limits; a CPU's
    cores and the instruction sets numpy and oneDNN use. Example: tfconf devices"""
    from tfconf.engine.devices import describe_devices

    def go():
        counts = {}
        for item in device_count or ():
            kind, sep, n = item.partition("=")
            if not sep or not n.strip().isdigit():
                raise UserError(f"--device-count {item}: expected TYPE=N, e.g. CPU=4.")
            counts[kind.strip().upper()] = int(n)
        try:
            return describe_devices(counts)
        except ValueError as e:
            raise UserError(f"--device-count: {e}") from None

    for d in errors.run(go):
        typer.echo(f"{d['name']}  {d['type']}  memory {d['memory_gb']:.1f} GiB  "
                   f"float32 matmul {d['gflops']:.0f} GFLOP/s")
        for key, value in _device_query(d):
            typer.echo(f"  {key + ':':<31}{value}")
    from tfconf.engine.kernel_choice import describe_providers

    for line in describe_providers():
        typer.echo(line)


#: oneDNN's dnnl_cpu_isa_t values (those of its 2.x and 3.x headers) → the ISA's name
_DNNL_ISA = {0x0: "default", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0xc07: "avx2_vnni_2",
             0xf: "avx512_mic", 0x1f: "avx512_mic_4ops", 0x27: "avx512_core", 0x67: "avx512_core_vnni",
             0xe7: "avx512_core_bf16", 0x1ef: "avx512_core_fp16", 0x3e7: "avx512_core_amx",
             0xfef: "avx512_core_amx", 0x1fef: "avx512_core_amx_fp16"}


def _device_query(d) -> list[tuple[str, str]]:
    """Caffe's ``device_query`` for one device of :func:`describe_devices`: (field, value) rows."""
    index = int(d["name"].rsplit(":", 1)[-1])
    rows = [("Device id", str(index))]
    if d["type"] == "GPU":
        return rows + _gpu_query(index)
    if index > 0:
        return rows + [("Type", "CPU (a virtual device on the same cores as CPU:0)")]
    return rows + _cpu_query(d)


def _cpu_query(d) -> list[tuple[str, str]]:
    import os
    import platform

    info = _cpuinfo()
    name = info.get("model name") or info.get("Model") or platform.processor() or platform.machine()
    rows = [("Name", name), ("Type", f"CPU ({platform.machine()})"),
            ("Total memory", f"{int(d['memory_gb'] * 2**30):,} bytes ({d['memory_gb']:.1f} GiB)")]
    logical = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    physical = info.get("physical cores")
    rows.append(("Cores", (f"{physical} physical, " if physical else "") + f"{logical} logical, {usable} usable "
                 "by this process"))
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
        except ImportError:
            __cpu_baseline__ = __cpu_dispatch__ = ()
            __cpu_features__ = {}
    import numpy as np

    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    rows.append(("numpy SIMD", f"baseline {' '.join(__cpu_baseline__) or 'none'}; dispatched on this CPU "
                 f"{' '.join(found) or 'none'} (numpy {np.__version__})"))
    from tfconf.engine.kernels.onednn.lib import Unavailable, library

    try:
        lib = library()
        code = int(lib.dll.dnnl_get_effective_cpu_isa())
        rows.append(("oneDNN ISA", f"{_DNNL_ISA.get(code, hex(code))} (oneDNN {lib.version_string})"))
    except (Unavailable, AttributeError, OSError) as e:
        rows.append(("oneDNN ISA", f"unavailable ({e})" if str(e) else "unavailable"))
    return rows


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo, plus ``physical cores`` (distinct core ids)."""
    out: dict = {}
    cores = set()
    try:
        with open("/proc/cpuinfo") as f:
            phys = None
            for line in f:
                key, sep, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if not sep:
                    continue
                if key == "physical id":
                    phys = value
                elif key == "core id":
                    cores.add((phys, value))
                out.setdefault(key, value)
    except OSError:
        return out
    if cores:
        out["physical cores"] = len(cores)
    return out


def _gpu_query(index: int) -> list[tuple[str, str]]:
    """The CUDA device properties Caffe's device_query prints, through CuPy."""
    try:
        import cupy

        p = cupy.cuda.runtime.getDeviceProperties(index)
        runtime, driver = cupy.cuda.runtime.runtimeGetVersion(), cupy.cuda.runtime.driverGetVersion()
    except Exception as e:  # noqa: BLE001 - CUDA's errors are many; the device line above stands
        return [("Properties", f"unavailable ({type(e).__name__}: {e})")]

    def get(key, default="?"):
        v = p.get(key, p.get(key.encode(), default)) if isinstance(p, dict) else default
        return v.decode(errors="replace").rstrip("\0") if isinstance(v, bytes) else v

    def dims(key):
        v = get(key)
        return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    def version(v):
        return f"{v // 1000}.{v % 1000 // 10}"

    yes = lambda v: "Yes" if v else "No"  # noqa: E731
    return [
        ("Name", str(get("name"))), ("Type", "GPU (CUDA)"),
        ("Compute capability", f"{get('major')}.{get('minor')}"),
        ("Major revision number", str(get("major"))), ("Minor revision number", str(get("minor"))),
        ("Total global memory", f"{get('totalGlobalMem'):,} bytes" if isinstance(get("totalGlobalMem"), int)
         else str(get("totalGlobalMem"))),
        ("Total shared memory per block", str(get("sharedMemPerBlock"))),
        ("Total registers per block", str(get("regsPerBlock"))), ("Warp size", str(get("warpSize"))),
        ("Maximum memory pitch", str(get("memPitch"))),
        ("Maximum threads per block", str(get("maxThreadsPerBlock"))),
        ("Maximum dimension of block", dims("maxThreadsDim")), ("Maximum dimension of grid", dims("maxGridSize")),
        ("Clock rate", f"{get('clockRate')} kHz"), ("Total constant memory", str(get("totalConstMem"))),
        ("Texture alignment", str(get("textureAlignment"))),
        ("Concurrent copy and execution", yes(get("deviceOverlap", get("asyncEngineCount", 0)))),
        ("Number of multiprocessors", str(get("multiProcessorCount"))),
        ("Kernel execution timeout", yes(get("kernelExecTimeoutEnabled", 0))),
        ("CUDA runtime / driver", f"{version(runtime)} / {version(driver)}"),
    ]


def draw(
    config: str = typer.Argument(..., help="The config (YAML)."),
    out: str = typer.Option(..., "-o", "--out", help="Output file: .dot always; .svg/.png need graphviz's `dot`."),
    phase: str = typer.Option("train", "--phase", help="train or test."),
    set_: Optional[List[str]] = common.SetOpt,
    trust_python: bool = common.TrustOpt,
):
    """Draw the net as a graph of layers and blobs (Caffe's draw_net)."""
    common.trust(trust_python)

    def go():
        from tfconf.frontend.draw import draw_net

        if phase not in ("train", "test"):
            raise UserError(f"--phase must be train or test. Received: {phase}")
        return draw_net(common.load_config(config, set_, check=False), out, phase)

    typer.echo(f"wrote {errors.run(go)}")
