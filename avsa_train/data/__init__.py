"""The training data stream: shards → (rank, worker) partitions → decoded, augmented items → batches.

One sample's path, one module per stage, each used by the next only:

1. :mod:`~avsa_train.data.sources` — which shard files (a folder, glob, brace pattern, ``pipe:`` or fsspec URL),
   their split, and what ``manifest.json`` says about them.
2. :mod:`~avsa_train.data.stream_config` — :class:`~avsa_train.data.stream_config.StreamConfig`: what an item
   holds (V views × M moments, the audio format, masks, events) and how it is augmented.
3. :mod:`~avsa_train.data.partition` — the raw samples of one consumer (rank × loader worker) for one epoch,
   shuffled deterministically.
4. :mod:`~avsa_train.data.members` — which members of a sample are read and kept at all.
5. :mod:`~avsa_train.data.augment` — colour jitter, flips and the Kinetics normalisation of the clips.
6. :mod:`~avsa_train.data.items` — one sample → one item: the drawn views' clips and audio (rendered by
   :mod:`avsa_data.renders`), consistently flipped and jittered.
7. :mod:`~avsa_train.data.batches` — the item stream of a rank (epoch after epoch, resumable), the item
   policies of pre-training and the downstream tasks, one collate function and one loader factory.
"""
