"""`avsa-train`: the command-line face of avsa_train. Commands only parse arguments and call the library."""

from __future__ import annotations

from cli._lazy import lazy_group

#: command name → "module:attribute" of its click command (one module per command).
COMMANDS: dict[str, str] = {
    "pretrain": "cli.train_pretrain:pretrain",
    "eval": "cli.train_eval:eval_cmd",
    "segment": "cli.train_segment:segment",
    "finetune": "cli.train_finetune:finetune",
    "ablate": "cli.train_ablate:ablate",
    "probe": "cli.train_probe:probe",
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
