"""`realspike zoo list|info|pull|push`: browse the catalogue, fetch verified checkpoints, publish new ones."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from realspike_cli.cli import options as opt
from realspike_cli.core.specs import Form, Spike

if TYPE_CHECKING:
    from realspike_cli.core.zoo import Entry


# `pull` on an entry that documents a paper result but publishes no weights: the recipe is printed and
# nothing is downloaded. A distinct code lets scripts tell "nothing to pull" (3) from a failure (1).
NO_WEIGHTS_EXIT = 3

Name = typer.Argument(..., help="Entry name or alias (see `realspike zoo list`).")


def list_command(
    dataset: str | None = typer.Option(None, "--dataset", help="Only entries on this data set."),
    arch: str | None = typer.Option(None, "--arch", help="Only entries of this architecture."),
    spike: Spike | None = typer.Option(None, "--spike", help="Only entries with this spike setting."),
    as_json: bool = opt.JsonOut,
) -> None:
    """List the catalogue: trained checkpoints and the paper's results (recipe only)."""
    from realspike_cli.cli.render import console, print_json, table
    from realspike_cli.core.zoo import load_catalogue

    catalogue = load_catalogue()
    entries = catalogue.select(dataset, arch, spike.value if spike else None)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    # names spell out <arch>-<data set>-t<T>-<spike>, so three columns fit an 80-column terminal
    rows = [[e.name, _weights(e), _accuracy(e)] for e in entries]
    title = f"realspike zoo: {len(entries)} of {len(catalogue.entries)} entries"
    console.print(table(title, ["name", "weights", "top-1"], rows))


def info_command(name: str = Name, as_json: bool = opt.JsonOut) -> None:
    """Show an entry's card: what it is, its files and checksums, accuracy, recipe and citation."""
    from realspike_cli.cli.render import console, print_json, table
    from realspike_cli.core.zoo import load_catalogue

    catalogue = load_catalogue()
    e = catalogue.get(name)
    citations = {key: catalogue.citations[key] for key in e.cite}
    if as_json:
        print_json({**e.to_dict(), "citations": citations})
        return
    console.print(f"{e.name}: {e.summary}", markup=False, highlight=False, soft_wrap=True)
    facts = [["kind", "trained here" if e.kind == "trained" else "paper result (recipe only)"],
             ["architecture", e.arch + (f" (width {e.width})" if e.width != 1.0 else "")], ["data set", e.dataset],
             ["time steps T", e.time_steps], ["spike setting", e.spike.value], ["hub repository", e.repo],
             ["revision", e.revision], ["licence", e.licence], ["paper", _paper_where(e)],
             ["reported top-1", _reported(e)], ["aliases", ", ".join(e.aliases) or None]]
    console.print(table("entry", ["field", "value"], [row for row in facts if row[1] is not None]))
    if e.forms:
        rows = [[w.form.value, w.file, f"{w.size:,} B", _pct(w.top1), w.images] for w in e.forms.values()]
        console.print(table("files", ["form", "file", "size", "top-1 (eval)", "test images"], rows))
        for w in e.forms.values():  # outside the table: a checksum must never be cut short
            typer.echo(f"sha256 ({w.form.value}): {w.sha256}" + (f"\n  made with: {w.command}" if w.command else ""))
        typer.echo(f"\npull: realspike zoo pull {e.name} [--form inference] [--mirror DIR]")
    else:
        typer.echo("\nno weights are published for this entry; `realspike zoo pull` prints the recipe.")
    typer.echo(f"recipe: {e.recipe}")
    if not e.forms:
        _echo_named_recipe(e)
    for text in citations.values():
        typer.echo(f"\n{text.strip()}")


def pull_command(
    name: str = Name,
    form: Form = typer.Option(Form.TRAIN, "--form", help="Training form or inference form (binary spikes)."),
    mirror: Path | None = typer.Option(
        None, "--mirror", help="Local mirror folder <DIR>/<owner>/<repo>/<file> (default: $REALSPIKE_ZOO_MIRROR)."
    ),
    revision: str | None = typer.Option(None, "--revision", help="Hub branch, tag or commit (default: the entry's)."),
) -> None:
    """Download (or find in the cache or a mirror) an entry's checkpoint, verify it, print its local path."""
    from realspike_cli.cli.render import errors
    from realspike_cli.core.zoo import NoWeightsError, pull

    try:
        pulled = pull(name, form, mirror=mirror, revision=revision)
    except NoWeightsError as exc:
        _explain_no_weights(exc.entry)
        raise typer.Exit(NO_WEIGHTS_EXIT) from None
    where = {"mirror": "the mirror", "bundled": "the source tree's zoo/weights"}.get(
        pulled.source, "the Hugging Face cache"  # hf downloads into its cache
    )
    errors.print(f"{pulled.entry.name} ({form.value} form, in {where}): sha256 and metadata match the catalogue",
                 markup=False, highlight=False, soft_wrap=True)
    typer.echo(str(pulled.path))  # stdout carries only the path, so CKPT=$(realspike zoo pull ...) works


def push_command(
    checkpoint: Path = opt.CheckpointArg,
    repo: str = typer.Option(..., "--repo", help="Hub repository OWNER/NAME (created if missing)."),
    to: Path | None = typer.Option(None, "--to", help="Write <DIR>/<owner>/<name>/ instead of uploading."),
    filename: str | None = typer.Option(
        None, "--file", help="Name in the repository (default: model.safetensors, model-inference.safetensors)."
    ),
    licence: str = typer.Option("mit", "--license", "--licence", help="Licence id for the model card."),
    private: bool = typer.Option(False, "--private", help="Create the hub repository as private."),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --to: replace a different file of that name."),
) -> None:
    """Publish a checkpoint with a generated model card; prints the catalogue entry to add."""
    from realspike_cli.cli.render import errors
    from realspike_cli.core.zoo import push

    done = push(checkpoint, repo, to=to, filename=filename, licence=licence, private=private, overwrite=overwrite)
    errors.print(f"published {done.file} ({done.size:,} bytes, sha256 {done.sha256}) with README.md -> "
                 f"{done.location}", markup=False, highlight=False, soft_wrap=True)
    typer.echo("# add to zoo/catalogue.toml (see zoo/README.md):")
    typer.echo(done.snippet, nl=False)


def _weights(entry: Entry) -> str:
    return ", ".join(f.value for f in entry.forms) if entry.forms else "recipe only"


def _accuracy(entry: Entry) -> str:
    """Measured top-1 of the published files; for a paper entry the paper's number ('paper: 95.71 ± 0.07')."""
    if entry.forms:
        return " / ".join(_pct(w.top1) or "–" for w in entry.forms.values())
    return f"paper: {entry.reported_accuracy}" if entry.reported_accuracy else "–"


def _paper_where(entry: Entry) -> str | None:
    if entry.paper_table is None:
        return None
    return f"Guo et al. (ECCV 2022), {entry.paper_table}" if "guo2022" in entry.cite else entry.paper_table


def _reported(entry: Entry, what: str = "") -> str | None:
    """'67.69 ± 0.07 %{what} (mean ± std over 3 trials)', the paper's digits."""
    if entry.reported_accuracy is None:
        return None
    trials = " (mean ± std over 3 trials)" if entry.reported_std is not None and "guo2022" in entry.cite else ""
    return f"{entry.reported_accuracy} %{what}{trials}"


def _pct(value: float | None) -> str | None:
    from realspike_cli.cli.render import percent

    return None if value is None else percent(value)


def _explain_no_weights(entry: Entry) -> None:
    """The honest answer for a paper entry: what it is, that nothing was downloaded, and the recipe."""
    reported = (f"{_paper_where(entry)} reports {_reported(entry, ' top-1')}." if entry.reported_top1 is not None
                else f"Paper result: {entry.paper_table}; its accuracy is not recorded in this catalogue.")
    typer.echo(f"{entry.name}: {entry.summary}")
    typer.echo(reported)
    typer.echo("This catalogue publishes no weights for this entry, so nothing was downloaded. Train them with:")
    typer.echo(f"  {entry.recipe}")
    _echo_named_recipe(entry)


def _echo_named_recipe(entry: Entry) -> None:
    """The named recipe behind a paper entry's command: which one, how it selects, what it notes."""
    from realspike_cli.core.recipes import RECIPES

    named = next((RECIPES[a] for a in entry.aliases if a in RECIPES), None)
    if named is not None:
        typer.echo(f"(= realspike train --recipe {named.name}; it keeps {named.selection})")
        if named.notes:
            typer.echo(f"Note: {named.notes}.")
