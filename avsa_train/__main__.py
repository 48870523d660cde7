"""``python -m avsa_train`` (and ``torchrun -m avsa_train``): the ``avsa-train`` command."""

from avsa_train.cli.main import main

if __name__ == "__main__":
    main(prog_name="avsa-train")
