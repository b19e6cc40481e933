"""Subcommands of ``dermaseg``: each module exposes ``register(subparsers)``."""
