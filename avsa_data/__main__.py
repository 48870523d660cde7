"""``python -m avsa_data``: the ``avsa-data`` command."""

from avsa_data.cli.main import main

if __name__ == "__main__":
    main(prog_name="avsa-data")
