"""``tfconf zoo``: pretrained entries with cards and checksums.

    tfconf zoo list                      # name, task, dataset, metric, params, weights
    tfconf zoo show lenet                # the card and the config
    tfconf zoo get lenet ./my_lenet      # config, card and verified weights, to edit and retrain
    tfconf zoo verify                    # sha256 of every shipped file (exit 2 on a mismatch)
    tfconf zoo test lenet                # the test phase on the shipped weights vs the card
    tfconf zoo build lenet               # retrain deterministically; rewrite weights, sha256, card
    tfconf train zoo:lenet --weights zoo:lenet --reinit ip2 --set layers.ip2.num_output=5
"""

from __future__ import annotations

from typing import List, Optional

import typer

from . import errors

app = typer.Typer(
    help="The model zoo: configs with cards, weights and checksums (built-in model_zoo/, "
         "TFCONF_ZOO_PATH and --zoo DIR). Use an entry anywhere a config goes: tfconf train zoo:lenet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _zoos(zoo: Optional[List[str]] = typer.Option(None, "--zoo", help="Another zoo folder (searched first; "
                                                   "repeatable). Example: tfconf zoo --zoo ~/my_zoo list")):
    errors.run(lambda: _registry().set_paths(zoo or []))


def _registry():
    from tfconf.zoo import registry

    return registry


def _fmt_count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _metric(card) -> str:
    if card.metrics is not None:
        k = card.metrics.main
        return f"{k} {card.metrics.values[k]:.4g}"
    r = card.reference
    return f"{r.metric} {r.value:.4g} (reported)" if r is not None else "-"


def _table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@app.command("list")
def list_():
    """The entries as a table. Example: tfconf zoo list"""
    entries = errors.run(lambda: _registry().entries())
    if not entries:
        typer.echo("no zoo entries found")
        return
    head = ["name", "task", "dataset", "metric", "params", "FLOPs", "weights"]
    user = any(not e.builtin for e in entries)
    if user:
        head.append("zoo")
    rows = [head]
    for e in entries:
        c = e.card
        w = "no" if c.weights is None else ("yes" if e.weights.is_file() else
                                           "url" if c.weights.url else "missing")
        row = [e.name, c.task, f"{c.dataset.name} ({c.dataset.split})", _metric(c), _fmt_count(c.params),
               _fmt_count(c.flops), w]
        if user:
            row.append(e.where())
        rows.append(row)
    typer.echo(_table(rows))


@app.command()
def show(name: str = typer.Argument(..., help="The entry, e.g. lenet.")):
    """Print an entry's card and config. Example: tfconf zoo show lenet"""
    e = errors.run(lambda: _registry().find(name))
    typer.echo(f"# zoo:{e.name}  ({e.dir})\n")
    typer.echo(f"## {e.card_path.name}\n{e.card_path.read_text().rstrip()}\n")
    typer.echo(f"## {e.config.name}\n{e.config.read_text().rstrip()}")


@app.command()
def get(
    name: str = typer.Argument(..., help="The entry, e.g. lenet."),
    dest: Optional[str] = typer.Argument(None, help="Folder to copy into (default ./NAME)."),
    force: bool = typer.Option(False, "--force", help="Replace files of an earlier copy in the folder that "
                               "were edited since (without it, an edited file is an error naming it)."),
):
    """Copy an entry's config, card and weights into a folder for editing; weights that only a url
    holds are downloaded (at most the card's size), and every file is verified by sha256 (a mismatch
    deletes the download). Getting again into an earlier, unedited copy changes nothing; a file edited
    since is refused unless --force. Example: tfconf zoo get lenet my_lenet && tfconf train my_lenet/model.yaml"""
    reg = _registry()

    def go():
        e = reg.find(name)
        return e, reg.get(e, dest or e.name, force=force)

    e, done = errors.run(go)
    for f, how in done:
        typer.echo(f"{f}: {how}")
    typer.echo(f"zoo:{e.name} is in {dest or e.name}/")


@app.command()
def verify(name: Optional[str] = typer.Argument(None, help="One entry (default: all).")):
    """Check the sha256 of every shipped file against the card (exit code 2 on a mismatch).
    Example: tfconf zoo verify lenet"""
    reg = _registry()
    entries = errors.run(lambda: [reg.find(name)] if name else reg.entries())
    bad = 0
    for e in entries:
        if not e.card.shipped:
            typer.echo(f"{e.name}: config only (no shipped files)")
            continue
        for f in e.card.shipped:
            try:
                status = reg.check_file(e, f)
            except reg.ChecksumError as err:
                typer.echo(f"error: {err}", err=True)
                bad += 1
                continue
            typer.echo(f"{e.name}: {f.file} " + ("sha256 ok" if status == "ok" else f"not here (fetched by `tfconf zoo get` from {f.url})"))
    if bad:
        typer.echo(f"{bad} file{'s' if bad > 1 else ''} failed verification", err=True)
        raise typer.Exit(2)


@app.command("test")
def test_(name: str = typer.Argument(..., help="The entry, e.g. lenet.")):
    """Run the test phase on the shipped weights and compare with the card's metrics within its
    tolerance (exit code 2 when one differs). Example: tfconf zoo test lenet"""
    from tfconf.zoo.build import compare, measure

    reg = _registry()

    def go():
        e = reg.find(name)
        if e.card.metrics is None:
            raise reg.ZooError(f"zoo:{e.name} is config only: nothing to test (its card gives a reference: "
                               f"{_metric(e.card)})")
        return e, measure(e)

    e, measured = errors.run(go)
    rows, ok = compare(e, measured)
    tol = e.card.metrics.tolerance
    table = [["metric", "card", "measured", "|diff|", f"within {tol:g}"]]
    for k, want, got, diff, good in rows:
        table.append([k, f"{want:.6g}", "missing" if got is None else f"{got:.6g}",
                      "-" if diff is None else f"{diff:.2g}", "yes" if good else "NO"])
    typer.echo(_table(table))
    if not ok:
        typer.echo(f"error: zoo:{e.name} does not reproduce its card (tolerance {tol:g})", err=True)
        raise typer.Exit(2)
    typer.echo(f"zoo:{e.name} reproduces its card")


@app.command()
def build(
    name: str = typer.Argument(..., help="The entry, e.g. lenet."),
    counts_only: bool = typer.Option(False, "--counts-only", help="Only recompute the card's params, FLOPs "
                                     "and input shape (config-only entries)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No training progress."),
):
    """Retrain an entry deterministically from its model.yaml and rewrite its weights, their
    sha256 and the card's metrics, params and FLOPs. Example: tfconf zoo build lenet"""
    from tfconf.zoo import build as b

    reg = _registry()

    def go():
        e = reg.find(name)
        if counts_only:
            card = b.counts_only(e)
            return e, None, card
        res = b.build(e, echo=typer.echo, quiet=quiet)
        return e, res, e.card

    e, res, card = errors.run(go)
    if res is None:
        typer.echo(f"zoo:{e.name}: params {card.params:,}, FLOPs {card.flops:,} per sample")
        return
    vals = ", ".join(f"{k} {v:.6g}" for k, v in res["metrics"].items())
    typer.echo(f"zoo:{e.name}: {res['iterations']} iterations in {res['seconds']:.1f} s; {vals}; "
               f"{card.weights.file} sha256 {res['sha256']}")
