"""Entry points: other installed packages add architectures and data sets that every command then knows.

A package declares, in its pyproject.toml,

    [project.entry-points."realspike.architectures"]
    mynet = "mypkg.models"            # a module whose import runs @register_arch(...)

    [project.entry-points."realspike.datasets"]
    mydata = "mypkg.data"             # a module whose import runs @register_dataset(...)

Loading is lazy (at the first lookup of a name that is not built in) and happens once per group. The
distribution that provided each loaded name is remembered, so checkpoints can record what to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from realspike_cli.core.errors import ConfigError

ARCH_GROUP = "realspike.architectures"
DATASET_GROUP = "realspike.datasets"


@dataclass(frozen=True)
class Provider:
    """The installed distribution an entry point came from (recorded in checkpoints)."""

    distribution: str
    version: str

    def to_dict(self) -> dict[str, str]:
        return {"distribution": self.distribution, "version": self.version}


_loaded: dict[str, list[Provider]] = {}


def load_group(group: str) -> list[Provider]:
    """Import every entry point of `group` (once); a plugin that fails to import is one ConfigError line."""
    if group in _loaded:
        return _loaded[group]
    providers: list[Provider] = []
    _loaded[group] = providers  # set first: a plugin that looks names up while importing must not recurse
    for ep in metadata.entry_points(group=group):
        dist = ep.dist
        provider = Provider(dist.name if dist else ep.module, dist.version if dist else "")
        try:
            ep.load()
        except Exception as exc:  # a plugin's own bug: name it, never a traceback from inside it
            del _loaded[group]
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"plugin {ep.name!r} ({provider.distribution} {provider.version}, entry point {ep.value!r} in "
                f"group {group!r}) failed to import: {type(exc).__name__}: {first}"
            ) from None
        providers.append(provider)
    return providers


def provider_of_module(module_name: str) -> Provider | None:
    """The installed distribution that ships the top-level package of `module_name`, if any is known."""
    top = module_name.split(".")[0]
    if top == "realspike_cli":
        return None
    for dist_name in metadata.packages_distributions().get(top, []):
        try:
            return Provider(dist_name, metadata.version(dist_name))
        except metadata.PackageNotFoundError:
            continue
    return None
