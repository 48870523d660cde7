"""The command-line face of avsa_train: ``avsa-train`` (``python -m avsa_train``; under ``torchrun -m
avsa_train``), one module per command, on the click plumbing of :mod:`avsa_data.cli`. ``avsa-data demo`` also lives
here (:mod:`avsa_train.cli.demo`), because it drives training; ``avsa-data`` loads it only when it runs.
"""
