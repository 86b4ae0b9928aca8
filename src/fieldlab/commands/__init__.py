"""Subcommands of the ``fieldlab`` CLI (see :data:`fieldlab.cli.COMMANDS`)."""
