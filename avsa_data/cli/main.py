"""`avsa-data`: the command-line face of avsa_data. Commands only parse arguments and call the library."""

from __future__ import annotations

from avsa_data.cli._lazy import lazy_group

#: command name → "module:attribute" of its click command (one module per command).
COMMANDS = {
    "synth": "avsa_data.cli.synth:synth",
    "shard": "avsa_data.cli.shard:shard",
    "verify": "avsa_data.cli.verify:verify",
    "inspect": "avsa_data.cli.inspect_sample:inspect_cmd",
    "demo": "avsa_train.cli.demo:demo",
    "labels": "avsa_data.cli.labels:labels",
}


main = lazy_group(
    "avsa-data",
    COMMANDS,
    """Turn 360° equirectangular video + first-order ambisonics into WebDataset shards.

    Conventions (ambiX ACN/SN3D, x front / y left / z up, azimuth positive to the left,
    equirect centre = front) are in docs/CONVENTIONS.md; the shard layout in docs/FORMAT.md.
    """,
)

if __name__ == "__main__":
    main()
