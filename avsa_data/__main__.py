"""``python -m avsa_data``: the ``avsa-data`` command."""

from avsa_data.cli.main import main

main(prog_name="avsa-data")
