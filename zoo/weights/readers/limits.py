"""Bounds that keep a hostile file from allocating more than it holds."""

import zipfile

from zoo.weights.readers.errors import CheckpointError

# A compressed zip member may inflate to at most this many times its
# compressed size, beyond BOMB_FREE_BYTES. torch.save writes members
# uncompressed and deflate of real weights gains little, so real files are
# never near it.
MAX_INFLATE_RATIO = 16
BOMB_FREE_BYTES = 1 << 24


def read_zip_member(path, zf, name, expected=None, limit=None):
    """Reads one zip member, bounded by what the archive can hold.

    Args:
        path: the archive's path, for error messages.
        zf: the open ``zipfile.ZipFile``.
        name: member name.
        expected: the exact uncompressed size required, checked against the
            member's declared size *before* anything is read.
        limit: read at most this many bytes (small records).

    Returns:
        The member's bytes.

    Raises:
        KeyError: no such member.
        CheckpointError: a declared size that does not fit, or a likely zip bomb.
    """
    info = zf.getinfo(name)
    if expected is not None and info.file_size != expected:
        raise CheckpointError(
            f"{path}: zip member {name} declares {info.file_size} bytes, expected {expected}")
    if (info.compress_type != zipfile.ZIP_STORED
            and info.file_size > max(BOMB_FREE_BYTES, MAX_INFLATE_RATIO * info.compress_size)):
        raise CheckpointError(
            f"{path}: zip member {name} inflates {info.compress_size} bytes to {info.file_size}; "
            "refusing a likely zip bomb")
    # zipfile stops at the declared size, so a member that inflates to more
    # than it declares cannot allocate more than that.
    with zf.open(info) as f:
        return f.read(info.file_size if limit is None else min(limit, info.file_size))
