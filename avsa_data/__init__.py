"""avsa_data: 360° video + first-order ambisonics → WebDataset shards of viewpoint banks.

This package never imports torch. Conventions (ambiX ACN/SN3D, x front / y left / z up,
azimuth positive to the left, equirect centre = front) are defined in docs/CONVENTIONS.md and
implemented once in :mod:`avsa_data.geometry`.
"""

__version__ = "0.1.0"
