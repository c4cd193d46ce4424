"""The Typer application and the entry point that turns every user-fixable error into one line."""

from __future__ import annotations

import sys

import typer

from realspike_cli import __version__
from realspike_cli.cli import energy as energy_cmd
from realspike_cli.cli import eval as eval_cmd
from realspike_cli.cli import export as export_cmd
from realspike_cli.cli import list as list_cmd
from realspike_cli.cli import plot as plot_cmd
from realspike_cli.cli import reparam as reparam_cmd
from realspike_cli.cli import train as train_cmd
from realspike_cli.cli import zoo as zoo_cmd
from realspike_cli.cli.usage import plain_flags, usage_message

app = typer.Typer(
    name="realspike",
    help="Train, convert, measure and share Real Spike spiking neural networks (Guo et al., ECCV 2022).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"realspike {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """realspike: Real Spike SNNs — training form with real-valued spikes, inference form with binary spikes."""


# Commands are plain functions in their own modules (none imports this one); the app is assembled here.
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.eval_command)
app.command("reparam")(reparam_cmd.reparam)
app.command("export")(export_cmd.export_command)
app.command("energy")(energy_cmd.energy_command)
app.command("plot")(plot_cmd.plot_command)
app.command("list")(list_cmd.list_command)

zoo_app = typer.Typer(
    name="zoo",
    help="The model zoo: list and inspect entries, pull verified checkpoints (hub, cache or mirror), push new ones.",
    no_args_is_help=True,
)
zoo_app.command("list")(zoo_cmd.list_command)
zoo_app.command("info")(zoo_cmd.info_command)
zoo_app.command("pull")(zoo_cmd.pull_command)
zoo_app.command("push")(zoo_cmd.push_command)
app.add_typer(zoo_app, name="zoo")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input exits non-zero with one `error:` line instead of a traceback."""
    from realspike_cli.cli.render import error
    from realspike_cli.core.stop_flag import StopNow, terminate_like_interrupt

    try:
        with terminate_like_interrupt():
            command = plain_flags(typer.main.get_command(app))  # --help: `--overwrite`, not `--overwrite <bool>`
            result = command.main(args=argv, prog_name="realspike", standalone_mode=False)
    except typer.Abort:
        error("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: bad flag, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `realspike` (or `realspike zoo`): help, like git
            text = exc.format_message()  # rich help is printed as it is made; click's comes back as text
            if text.strip():
                typer.echo(text)
            sys.exit(0)
        error(usage_message(exc))
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except StopNow as exc:  # a second signal during training, or SIGTERM: says which, exits 128 + its number
        error(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:  # a filesystem failure no command turned into its own line: the path and the reason
        from realspike_cli.core.files import describe_os_error

        where = f"{exc.filename}: " if exc.filename is not None else ""
        error(f"{where}{describe_os_error(exc, exc.filename)}")
        sys.exit(1)
    except Exception as exc:
        from realspike_cli.core.errors import RealSpikeError

        if not isinstance(exc, RealSpikeError):
            from realspike_cli.core.guards import describe_out_of_memory

            described = describe_out_of_memory(exc)  # an allocation no command sized: one line all the same
            if described is None:
                raise  # a bug: its traceback
            exc = described
        error(str(exc))
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


def run(argv: list[str] | None = None) -> None:
    """The console entry point (`realspike`, `python -m realspike_cli`): `main`, and a torchrun worker leaves
    through `exit_worker` (see there why); in-process callers of `main` get its SystemExit as before."""
    try:
        main(argv)
    except SystemExit as stop:
        from realspike_cli.core.distributed import exit_worker, launched_by_torchrun

        # A finished or stopped worker (0, 130, 143). An error exit keeps the normal shutdown: leaving at once
        # lets torchrun SIGTERM the peers before they reach the same one-line error themselves.
        if launched_by_torchrun() and (stop.code or 0) in (0, 130, 143):
            exit_worker(stop.code or 0)
        raise

