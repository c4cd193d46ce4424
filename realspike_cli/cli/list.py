"""`realspike list archs|datasets|recipes|energy-profiles`: what realspike knows by name (core.listing)."""

from __future__ import annotations

from enum import Enum

import typer

from realspike_cli.cli import options as opt


class Kind(str, Enum):
    archs = "archs"
    datasets = "datasets"
    recipes = "recipes"
    energy_profiles = "energy-profiles"


COLUMNS = {
    "archs": [("name", "name"), ("parameters", "parameters"), ("default_neuron", "neuron"),
              ("description", "description")],
    "datasets": [("name", "name"), ("description", "description"), ("default_time_steps", "default T")],
    "recipes": [("name", "name"), ("schedule", "epochs × batch × GPUs"), ("reported", "paper top-1 (%)"),
                ("selection", "best on"), ("description", "tables")],
    "energy-profiles": [("name", "name"), ("e_mac_pj", "pJ/MAC"), ("e_ac_pj", "pJ/AC"), ("description", "source")],
}


def list_command(
    kind: Kind = typer.Argument(..., help="archs, datasets, recipes or energy-profiles."),
    dataset: str = typer.Option(
        "cifar10", "--dataset", help="archs: count parameters for this data set's input shape and classes."
    ),
    spike: str = typer.Option("binary", "--spike", help="archs: count parameters with this spike setting."),
    as_json: bool = opt.JsonOut,
) -> None:
    """List architectures (with parameter counts), data sets, named recipes or energy profiles."""
    from realspike_cli.cli.render import console, print_json, table
    from realspike_cli.core.listing import list_entries

    options = {"dataset": dataset, "spike": spike} if kind is Kind.archs else {}
    rows = list_entries(kind.value, **options)
    if as_json:
        print_json({"kind": kind.value, **options, "entries": rows})
        return
    title = kind.value
    if kind is Kind.archs:
        title += f" (parameters for {dataset}'s input and classes, {spike} spikes; counted without allocating)"
    elif kind is Kind.recipes:
        title += " (best selected on the test set, as in the authors' code; add --val-split to select on validation)"
    columns = COLUMNS[kind.value]
    listing = table(title, [label for _, label in columns], [[r.get(k) for k, _ in columns] for r in rows])
    names = listing.columns[0]  # a name is what one types next: never cut or wrapped
    names.no_wrap, names.min_width = True, max((len(r["name"]) for r in rows), default=4)
    console.print(listing)
