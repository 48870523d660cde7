"""`avsa-train`: the command-line face of avsa_train. Commands only parse arguments and call the library."""

from __future__ import annotations

import click

from cli._lazy import LazyGroup

#: command name → "module:attribute" of its click command (one module per command).
COMMANDS: dict[str, str] = {
    "pretrain": "cli.train_pretrain:pretrain",
    "eval": "cli.train_eval:eval_cmd",
    "segment": "cli.train_segment:segment",
    "finetune": "cli.train_finetune:finetune",
    "ablate": "cli.train_ablate:ablate",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="avsa")
def main() -> None:
    """Pre-train AVC / AVTS / AVSA models on avsa shards and evaluate them downstream.

    Hyper-parameter defaults follow the AVSA paper's supplementary Table 2, §A.2 and §A.3;
    deviations are listed in docs/DEVIATIONS.md.
    """


if __name__ == "__main__":
    main()
