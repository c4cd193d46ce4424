"""The built-in architectures; importing this package registers them (each module uses `@register_arch`)."""

from realspike_cli.core.archs import resnet, small, vgg  # noqa: F401
