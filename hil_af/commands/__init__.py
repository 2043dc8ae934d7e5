"""One module per ``hil-af`` command: ``add_arguments(parser)`` and ``run(args) -> int``."""
