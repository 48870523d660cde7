"""The command-line face of avsa_data: ``avsa-data`` (``python -m avsa_data``), one module per command, and the
click plumbing every command shares (options generated from config fields, one error path, ``--config``).

The commands only parse options and call the library. ``avsa-train`` (:mod:`avsa_train.cli`) builds on the same
plumbing. The package is named inside the project's own packages, so installing avsa never adds a top-level
``cli`` package that could collide with another distribution's.
"""
