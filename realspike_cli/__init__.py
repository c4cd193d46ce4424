"""realspike: Real Spike spiking neural networks (Guo et al., ECCV 2022) — library, CLI and model zoo.

Importing this package must stay cheap (no torch), so that `realspike --help` starts instantly.
"""

__version__ = "0.1.0"
