"""`avsa-train`: the command-line face of avsa_train. Commands only parse arguments and call the library."""

from __future__ import annotations

from avsa_data.cli._lazy import lazy_group

#: command name → "module:attribute" of its click command (one module per command).
COMMANDS: dict[str, str] = {
    "pretrain": "avsa_train.cli.pretrain:pretrain",
    "eval": "avsa_train.cli.eval:eval_cmd",
    "segment": "avsa_train.cli.segment:segment",
    "finetune": "avsa_train.cli.finetune:finetune",
    "ablate": "avsa_train.cli.ablate:ablate",
    "probe": "avsa_train.cli.probe:probe",
}


main = lazy_group(
    "avsa-train",
    COMMANDS,
    """Pre-train AVC / AVTS / AVSA models on avsa shards and evaluate them downstream.

    Hyper-parameter defaults follow the AVSA paper's supplementary Table 2, §A.2 and §A.3;
    deviations are listed in docs/DEVIATIONS.md.
    """,
)

if __name__ == "__main__":
    main()
