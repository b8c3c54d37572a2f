"""``tfconf draw``: the net as a Graphviz graph of layers (boxes) and blobs (ellipses), as Caffe's
draw_net.py does. Writes .dot itself; .svg/.png/.pdf go through graphviz's ``dot`` if installed."""

from __future__ import annotations

import os
import shutil
import subprocess


def net_to_dot(cfg, phase="train") -> str:
    from .layers.base import NetState

    state = NetState(phase=phase)
    lines = [f'digraph "{cfg.net.name}" {{', "  rankdir=TB;", '  node [fontname="Helvetica"];']
    prev = "data"
    blobs = set()
    for layer in cfg.net.layers:
        if not layer.included(state):
            continue
        lo = layer.num_bottoms[0]
        bottoms = layer.bottom if layer.bottom is not None else ([prev] if lo > 0 else [])
        tops = layer.output_names()
        label = f"{layer.name}\\n({layer.type})"
        lines.append(f'  "L:{layer.name}" [shape=box, style=filled, fillcolor="#dbe9f6", label="{label}"];')
        for b in bottoms:
            if b not in blobs:
                lines.append(f'  "B:{b}" [shape=ellipse, label="{b}"];')
                blobs.add(b)
            lines.append(f'  "B:{b}" -> "L:{layer.name}";')
        for t in tops:
            if t not in blobs:
                lines.append(f'  "B:{t}" [shape=ellipse, label="{t}"];')
                blobs.add(t)
            lines.append(f'  "L:{layer.name}" -> "B:{t}";')
        if tops:
            prev = tops[0]
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_net(cfg, out, phase="train"):
    from tfconf.errors import UserError

    dot = net_to_dot(cfg, phase)
    ext = os.path.splitext(out)[1].lower().lstrip(".")
    if ext in ("dot", "gv", ""):
        with open(out, "w") as f:
            f.write(dot)
        return out
    exe = shutil.which("dot")
    if exe is None:
        raise UserError(f"writing .{ext} needs graphviz's `dot` program (apt-get install graphviz); "
                        f"use -o {os.path.splitext(out)[0]}.dot meanwhile")
    subprocess.run([exe, f"-T{ext}", "-o", out], input=dot.encode(), check=True)
    return out
