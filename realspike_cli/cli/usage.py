"""Usage errors (a malformed flag value, a missing argument) as one plain line, and help without `<bool>`.

Typer validates option values with pydantic (typer >= 0.16) or click's own types (older releases): the
first says "Input should be a valid integer, unable to parse string as an integer" without the value, the
second "'abc' is not a valid integer.". Both become `invalid value for '--t': 'abc' is not a valid integer`.
"""

from __future__ import annotations

from typing import Any

# pydantic error type -> what is wrong with the value (formatted with the error's context: ge, le, ...)
_PYDANTIC_REASONS = {
    "int_parsing": "is not a valid integer",
    "int_from_float": "is not a valid integer",
    "int_type": "is not a valid integer",
    "float_parsing": "is not a valid number",
    "float_type": "is not a valid number",
    "finite_number": "is not a finite number",
    "bool_parsing": "is not a valid boolean (use the flag alone, or its --no- form)",
    "greater_than_equal": "is below the minimum {ge}",
    "greater_than": "is not above {gt}",
    "less_than_equal": "is above the maximum {le}",
    "less_than": "is not below {lt}",
}


def usage_message(exc: Any) -> str:
    """One line for a click/Typer usage error, ending with where to read more."""
    message = _bad_value(exc) or " ".join(exc.format_message().split())
    message = message[:1].lower() + message[1:] if message.startswith(("Invalid", "Missing")) else message
    message = message.rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


def _bad_value(exc: Any) -> str | None:
    """`invalid value for '--t': 'abc' is not a valid integer` from a pydantic validation error, else None."""
    param, cause = getattr(exc, "param", None), exc.__cause__
    errors = getattr(cause, "errors", None)
    if param is None or not callable(errors):
        return None
    first = errors()[0]
    reason = _PYDANTIC_REASONS.get(first.get("type", ""))
    if reason is None:  # e.g. a callback's own ValueError: its message already names the value
        return f"invalid value for {_hint(param)}: {str(first.get('msg', '')).removeprefix('Value error, ')}"
    return f"invalid value for {_hint(param)}: {first.get('input')!r} {reason.format(**first.get('ctx', {}))}"


def _hint(param: Any) -> str:
    try:
        return param.get_error_hint()
    except TypeError:  # click's Parameter.get_error_hint(ctx)
        return param.get_error_hint(None)


def plain_flags(command: Any) -> Any:
    """`command` (a click command built from the Typer app) with every boolean flag, --help included, shown
    as `--overwrite` or `--amp/--no-amp` in --help, without a `<bool>` value column: a flag takes no value."""
    import typer

    for cmd in _walk(command):
        help_option = cmd.get_help_option(typer.Context(cmd))  # made on first use; cached on the command
        for param in [*cmd.params, *([help_option] if help_option is not None else [])]:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
    return command


def _walk(command: Any) -> list[Any]:
    found = [command]
    for sub in getattr(command, "commands", {}).values():
        found += _walk(sub)
    return found
