"""avsa_train: PyTorch pre-training (AVC / AVTS / AVSA) and downstream tasks over avsa shards."""

import os

# PyTorch's CPU kernels run on OpenMP threads that, by default, spin while they wait for work. On a machine
# whose cores are shared (DataLoader workers, a second job, a CI runner), the spinning threads steal the cores
# the others need, and a training step was measured 8–9× slower (45 s vs 5.5 s for 6 AVC steps on 2 busy cores).
# Passive waiting costs nothing measurable when the cores are free. It must be set before torch is imported;
# a value the user sets wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
