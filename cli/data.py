"""`avsa-data`: the command-line face of avsa_data. Commands only parse arguments and call the library."""

from __future__ import annotations

from cli._lazy import lazy_group

#: command name → "module:attribute" of its click command (one module per command).
COMMANDS = {
    "synth": "cli.data_synth:synth",
    "shard": "cli.data_shard:shard",
    "verify": "cli.data_verify:verify",
    "inspect": "cli.data_inspect:inspect_cmd",
    "demo": "cli.data_demo:demo",
    "labels": "cli.data_labels:labels",
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
