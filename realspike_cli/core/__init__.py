"""The PyTorch library behind the `realspike` command; never imports typer or rich."""
