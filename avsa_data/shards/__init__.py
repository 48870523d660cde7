"""`avsa-data shard`: a folder of raw 360° videos → WebDataset shards, in parallel, atomically, resumably.

The job has two phases, both deterministic and independent of the worker count:

1. **Per video** (in parallel, one task per video): probe, read the FOA, stream the frames once, and write
   the video's encoded samples to a *fragment* ``OUT/.work/frag/{video_id}.tar`` (temp file + rename).
   A bad input is recorded in ``OUT/.work/frag/{video_id}.failed.json`` and never stops the job.
2. **Assembly**: fragments are concatenated in sorted video order, per split, into
   ``OUT/{split}-{NNNNNN}.tar`` of ``--shard-size`` samples (or megabytes). Each shard is written to
   ``*.tmp`` and renamed. Finally ``manifest.json`` and ``failures.jsonl`` are written (also atomically)
   and the work folder is removed.

A rerun of the same command after an interruption (even ``kill -9``) skips finished fragments and shards
and ends byte-identical to an uninterrupted run. Changing the configuration of an existing output needs
``--overwrite``. One job at a time may use an output folder (an ``fcntl`` lock on ``OUT/.lock``).

Every input's identity (path, size, mtime and a hash of its first and last MiB; :mod:`avsa_data.input_identity`)
is recorded in its fragment summary and in the manifest. A rerun over a finished output then:

- shards videos added to ``--src`` as an *incremental update*: their samples go to new shards numbered after
  the existing ones of their split, and the finished shards are never rewritten (they stay byte-identical);
- retries failed videos whose input changed;
- refuses changed or removed inputs that have samples in the shards (``--overwrite`` rebuilds), and another
  ``--src`` than the one the output was made from.

A fragment whose input changed while the job was interrupted is made again, never mixed in.

Only bad input (:class:`~avsa_data.media.MediaError`, :class:`~avsa_data.labels.LabelError`) is recorded as a
failure. Errors of the environment (disk full, file too large, out of memory, too many open files, a killed
ffmpeg) stop the job with one line (:class:`JobStopped`) and leave nothing recorded against the input, so the
rerun retries it.

``OUT`` may also be an fsspec URL (``s3://bucket/prefix``, ``file:///…``; :mod:`avsa_data.remote`). Both
phases then run in a local *staging* folder (``--staging``, by default one under the system temp folder named
after the URL), and each finished shard is uploaded and removed from the staging folder, followed by
``failures.jsonl`` and, last, ``manifest.json``: its presence (``complete: true``) marks the job done. The
bytes are those of a local run: both kinds of output go through one job path (lock, check the configuration,
plan the update, phase 1, assembly, report) over a :class:`LocalOutput` or a :class:`UrlOutput`, which differ
only in where the files end up.

Phases hand each other typed results: :class:`VideoResult` (a video's fragment summary, with its
:class:`FragmentSample` index) and :class:`ShardPlan`; the label backend belongs to the job's
:class:`VideoSharder`.

Modules, in the order a video meets them (docs/ARCHITECTURE.md): :mod:`.config` (the job's options),
:mod:`.discovery` (videos and splits), :mod:`.reruns` (what changed since the last run), :mod:`.engines` (local
pool or Ray), :mod:`.video` (phase 1 for one video), :mod:`.assembly` (phase 2: shards, manifest),
:mod:`.outputs` (the output folder, local or URL), :mod:`.job` (the two phases together), :mod:`.errors`. The tar
blocks themselves are written and read by :mod:`avsa_data.tario`.
"""


from .config import ENGINES, JobConfig, VideoTask
from .errors import JobStopped, ShardJobError, ShardOptionError
from .job import run_shard_job
from .outputs import JobReport

__all__ = ["ENGINES", "JobConfig", "JobReport", "JobStopped", "ShardJobError", "ShardOptionError", "VideoTask",
           "run_shard_job"]
