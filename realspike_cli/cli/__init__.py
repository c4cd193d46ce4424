"""The `realspike` command line: parses options, calls `realspike_cli.core`, prints with rich."""
