"""The converted net as commented YAML."""

from __future__ import annotations

from ..prototxt import Enum
from .fields import _Layer


# =============================================================================== YAML output
def _scalar(v) -> str:
    import yaml

    if isinstance(v, Enum):
        v = str(v)
    return yaml.safe_dump([v], default_flow_style=True, width=float("inf")).strip()[1:-1]


def _flow(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _wrap_mapping(d: dict, first: str, cont: str, width: int = 100) -> list[str]:
    """A flow mapping ``{k: v, ...}`` over as few lines as fit ``width`` (breaking between items)."""
    items = [f"{_scalar(k)}: {_flow(v)}" for k, v in d.items()]
    lines, line = [], first + "{"
    for i, item in enumerate(items):
        piece = item + ("}" if i == len(items) - 1 else ",")
        if len(line) + len(piece) + 1 > width and not line.endswith("{"):
            lines.append(line)
            line = cont + piece
        else:
            line += ("" if line.endswith("{") else " ") + piece
    if not items:
        line += "}"
    lines.append(line)
    return lines


def _comment_lines(text: str, indent: str, width: int = 100) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}#   ", break_on_hyphens=False, break_long_words=False)


def _emit(name: str, header: list[str], net_comments: list[str], data: dict, data_comments: tuple,
          layers: list[_Layer], solver: dict | None, solver_comments: list[str], solver_file: str | None) -> str:
    out: list[str] = []
    for h in header:
        out += _comment_lines(h, "")
    out.append(f"name: {_scalar(name)}")
    for c in net_comments:
        out += _comment_lines(c, "")
    if data:
        by_phase, hints = data_comments
        out.append("data:")
        for c in hints:
            out += _comment_lines(c, "  ")
        # train, test, then the named sources of further test nets (solver.test_nets reads them)
        for key in ["train", "test"] + [k for k in data if k not in ("train", "test")]:
            if key not in data:
                continue
            for c in by_phase.get(key, []):
                out += _comment_lines(c, "  ")
            out += _wrap_mapping(data[key], f"  {_scalar(key)}: ", "    ")
    out.append("layers:")
    for layer in layers:
        if layer.data:
            continue
        for c in layer.comments:
            out += _comment_lines(f"{layer.spec['name']}: {c}", "  ")
        out += _wrap_mapping(layer.spec, "  - ", "     ")
    if solver is not None:
        out.append("solver:")
        if solver_file:
            out += _comment_lines(f"From {solver_file}.", "  ")
        for c in solver_comments:
            out += _comment_lines(c, "  ")
        for k, v in solver.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):  # test_nets: one per line
                out.append(f"  {_scalar(k)}:")
                for x in v:
                    out += _wrap_mapping(x, "    - ", "       ")
            else:
                out.append(f"  {_scalar(k)}: {_flow(v)}")
    return "\n".join(out) + "\n"


def _compact_layer(spec: dict) -> dict:
    """Leave out what tfconf's defaults already say: a top equal to the name, single names as strings."""
    out = dict(spec)
    if out.get("top") == [out["name"]]:
        del out["top"]
    for key in ("bottom", "top"):
        if key in out and len(out[key]) == 1:
            out[key] = out[key][0]
    for key in ("include", "exclude"):
        if key in out and len(out[key]) == 1:
            out[key] = out[key][0]
    if "loss_weight" in out and len(out["loss_weight"]) == 1:
        out["loss_weight"] = out["loss_weight"][0]
    return out
