"""Architectures; each module registers its builders with `@register_arch`."""
