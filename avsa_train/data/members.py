"""Member selection: only the members an item can use (its clips, its audio, masks when asked) are read and kept
in the shuffle buffer. FOA, mono and virtual-mic stereo renders of the drawn views are made from the sample's one
unrotated FOA (:func:`derived`), not read per view.
"""

from __future__ import annotations

from collections.abc import Callable

from avsa_data import renders, shard_format
from avsa_data.reader import RawSample

from .stream_config import AUDIO_FORMATS, StreamConfig


def derived(s: RawSample, render: str) -> bool:
    """Whether ``render`` of ``s``'s views is made from the moment's one unrotated ``mMM.foa.flac``
    (:func:`avsa_data.renders.render_matrix`, :func:`~avsa_train.data.items.view_audio`: one FLAC decode per
    moment instead of one per view) rather than read: FOA and mono always, stereo when it is virtual-mic
    (:func:`avsa_data.renders.derivable_renders`). HRIR stereo, a convolution, is read precomputed when stored."""
    return render in renders.derivable_renders(renders.binaural_mode(s.meta))


def member_wanted(cfg: StreamConfig) -> Callable[[str], bool]:
    """Whether ``decode_item(·, cfg)`` may read the member with this suffix (``m00.v01.jpg``): ``meta.json``,
    the clips, the unrotated FOA, the stored stereo renders when the format is stereo (HRIR stereo is read,
    :func:`derived`; ``prune_members`` drops what the sample's meta shows unused) and the low-resolution masks
    when asked. The reader passes the others over unread (:func:`avsa_data.reader.iter_raw`)."""
    render, _ = AUDIO_FORMATS[cfg.audio_format]
    maybe_stored = render not in renders.derivable_renders("hrir")  # stereo: stored for an HRIR, else derived

    def wanted(name: str) -> bool:
        parts = name.split(".")
        if name == shard_format.meta_member():
            return True
        if len(parts) == 3:  # mMM.vKK.jpg, mMM.foa.flac (mMM.equirect.jpg is not read)
            return (parts[1].startswith("v") and parts[2] == "jpg") or (parts[1] == "foa" and parts[2] == "flac")
        if len(parts) == 4 and parts[3] == "flac":  # mMM.vKK.<render>.flac
            return parts[2] == render and maybe_stored
        return cfg.with_masks and len(parts) == 4 and parts[2] in ("seg56", "conf56")

    return wanted


def prune_members(s: RawSample, cfg: StreamConfig) -> RawSample:
    """``s`` without the members ``decode_item(·, cfg)`` never reads (:func:`member_wanted`): the stored renders
    when the wanted one is :func:`derived`, else (HRIR stereo, stored) the unrotated FOA."""
    render, _ = AUDIO_FORMATS[cfg.audio_format]
    wanted = member_wanted(cfg)
    make = derived(s, render)
    stored = not make and any(name.endswith(f".{render}.flac") and name.count(".") == 3 for name in s.members)

    def keep(name: str) -> bool:
        if not wanted(name):
            return False
        if name.count(".") == 3 and name.endswith(".flac"):  # mMM.vKK.<render>.flac
            return not make
        return not (stored and name.count(".") == 2 and name.endswith(".foa.flac"))

    pruned = RawSample(s.key, {name: data for name, data in s.members.items() if keep(name)}, s.shard)
    pruned.__dict__["meta"] = s.meta  # the decoded meta.json (a cached_property) carries over
    return pruned
