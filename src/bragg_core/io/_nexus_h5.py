"""What the NeXus writer (:mod:`bragg_core.io.nexus`) and reader (:mod:`bragg_core.io.nexus_read`) share: h5py,
which is optional (the ``nexus`` extra), imported only when a file is written or read."""

from __future__ import annotations

NEXUS_MISSING = "NeXus output needs h5py (pip install 'bragg_core[nexus]')"


def nexus_available() -> bool:
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(NEXUS_MISSING) from None
    return h5py
