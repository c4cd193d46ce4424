"""`python -m realspike_cli` — the same entry point as the `realspike` console script."""

from realspike_cli.cli.app import run

if __name__ == "__main__":
    run()
