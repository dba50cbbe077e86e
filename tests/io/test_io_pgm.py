import gzip
from pathlib import Path

import numpy as np
import pytest

from bragg_core.io import image_statistics, int_image_scale, pgm_auto_scale, pgm_bytes, write_pgm

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _float_image(case):
    data = gzip.decompress((GOLDEN / case / "image.bin.gz").read_bytes())
    return np.frombuffer(data, "<f4").reshape(128, 128)


@pytest.mark.parametrize("case, user_pgm, user_int", [("smv_scale_adc", 0.0, 200.0),
                                                      ("smv_autoscale_pgmscale", 2.0, 0.0)])
def test_golden_pgm(case, user_pgm, user_int, tmp_path):
    stdout = (GOLDEN / case / "stdout.txt").read_text()
    image = _float_image(case)
    stats = image_statistics(image)
    line = "mean= %s rms= %s rmsd= %s" % tuple(f"{v:g}" for v in stats[1:])
    assert line in stdout and f"max_I = {stats.max_I:g} " in stdout
    scale = pgm_auto_scale(user_pgm, stats.rmsd, int_image_scale(stats.max_I, user_int))
    assert f"pgm_scale = {scale:g}\n" in stdout
    ref = (GOLDEN / case / "image.pgm").read_bytes()
    assert pgm_bytes(image, scale) == ref
    write_pgm(tmp_path / "x.pgm", image, scale)
    assert (tmp_path / "x.pgm").read_bytes() == ref


def test_auto_case_uses_rmsd():
    stats = image_statistics(_float_image("smv_scale_adc"))
    assert pgm_auto_scale(0.0, stats.rmsd, 200.0) == 250.0 / (5.0 * stats.rmsd)
    assert pgm_auto_scale(-1.0, 0.0, 7.5) == 7.5  # flat image: falls back to the int scale


def test_pixels_truncate_clip_and_roi():
    img = np.float32([[-1.0, 0.99, 1.99, np.nan], [127.9, 300.0, 2.0, 3.0]])
    roi = np.array([[True] * 4, [True, True, False, True]])
    data = pgm_bytes(img, 1.0, roi_mask=roi)
    header = b"P5\n4 2\n# pixels scaled by 1\n255\n"
    assert data[: len(header)] == header
    assert list(data[len(header):]) == [0, 0, 1, 0, 127, 255, 0, 3]


def test_statistics_edge_cases():
    assert image_statistics(np.float32([[-1.0, -2.0]])).max_I == 0.0
    roi = np.zeros((1, 2), bool)
    stats = image_statistics(np.float32([[5.0, 5.0]]), roi)
    assert stats == (0.0, 0.0, 0.0, 0.0)
    one = image_statistics(np.float32([[3.0]]))  # n=1: the n-1 divisors become 1
    assert one.mean == 3.0 and one.rms == 3.0 and one.rmsd == 0.0
