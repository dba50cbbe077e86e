import gzip
from pathlib import Path

import numpy as np
import pytest

from bragg_core.io import FloatFileFormatError, read_floatfile, write_floatfile

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def test_round_trip_little_endian_fast_major(tmp_path):
    image = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    write_floatfile(tmp_path / "f.bin", image)
    raw = (tmp_path / "f.bin").read_bytes()
    assert raw == image.astype("<f4").tobytes() and len(raw) == 48
    back = read_floatfile(tmp_path / "f.bin", (3, 4))
    assert back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_array_equal(back, image.astype(np.float32))
    assert read_floatfile(tmp_path / "f.bin").shape == (12,)


def test_golden_float_image_round_trip(tmp_path):
    raw = gzip.decompress((GOLDEN / "cubic_default" / "image.bin.gz").read_bytes())
    (tmp_path / "ref.bin").write_bytes(raw)
    image = read_floatfile(tmp_path / "ref.bin", (256, 256))
    write_floatfile(tmp_path / "out.bin", image)
    assert (tmp_path / "out.bin").read_bytes() == raw


def test_size_errors(tmp_path):
    (tmp_path / "f.bin").write_bytes(bytes(10))
    with pytest.raises(FloatFileFormatError, match="multiple of 4"):
        read_floatfile(tmp_path / "f.bin")
    (tmp_path / "g.bin").write_bytes(bytes(16))
    with pytest.raises(FloatFileFormatError, match="shape"):
        read_floatfile(tmp_path / "g.bin", (3, 2))
