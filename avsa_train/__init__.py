"""avsa_train: PyTorch pre-training (AVC / AVTS / AVSA) and downstream tasks over avsa shards."""

__version__ = "0.1.0"
