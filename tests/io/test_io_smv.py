import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bragg_core.io import (
    SMVFormatError,
    SMVHeader,
    c_format_g,
    int_image,
    int_image_scale,
    parse_smv,
    parse_smv_header,
    read_smv,
    smv_header,
    write_smv,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
HEADER_CASES = sorted(p.parent.name for p in GOLDEN.glob("*/smv_header.txt"))


def _float_image(case, shape):
    data = gzip.decompress((GOLDEN / case / "image.bin.gz").read_bytes())
    return np.frombuffer(data, "<f4").reshape(shape)


def _stdout_value(case, pattern):
    return float(re.search(pattern, (GOLDEN / case / "stdout.txt").read_text()).group(1))


# expected strings from a C program printing doubles with printf("%g") (glibc);
# note that bash's printf builtin uses long double and prints 99999.95 as "100000"
C_G = [
    (0.0, "0"), (-0.0, "-0"), (1e-5, "1e-05"), (1e-4, "0.0001"), (123456.0, "123456"),
    (1234567.0, "1.23457e+06"), (1e6, "1e+06"), (-6.45, "-6.45"), (12.85, "12.85"),
    (1e100, "1e+100"), (2.5e-310, "2.5e-310"), (99999.95, "99999.9"),
    (0.000123456789, "0.000123457"), (float("inf"), "inf"), (float("-inf"), "-inf"),
    (float("nan"), "nan"), (-float("nan"), "-nan"),
]


@pytest.mark.parametrize("value, text", C_G)
def test_c_format_g(value, text):
    assert c_format_g(value) == text


def test_header_cases_found():
    assert len(HEADER_CASES) == 60


@pytest.mark.parametrize("case", HEADER_CASES)
def test_header_reemitted_byte_exact(case):
    raw = (GOLDEN / case / "smv_header.txt").read_bytes()
    assert len(raw) == 512
    assert smv_header(parse_smv_header(raw)) == raw


def test_header_from_geometry_smv_scale_adc():
    case = "smv_scale_adc"
    v = lambda name: _stdout_value(case, rf"\b{name}=(\S+)")  # noqa: E731
    origin = re.search(r"dials origin= (\S+) (\S+) (\S+)", (GOLDEN / case / "stdout.txt").read_text())
    kwargs = dict(
        fpixels=128, spixels=128, pixel_size=1e-4, distance=0.1, wavelength=6.2 / 1e10,
        xbeam=v("Xbeam"), ybeam=v("Ybeam"), fbeam=v("Fbeam"), sbeam=v("Sbeam"),
        detsize_s=128 * 1e-4, dials_origin=[float(x) for x in origin.groups()],
        orgx=v("Fclose") / 1e-4 + 0.5, orgy=v("Sclose") / 1e-4 + 0.5,
        close_distance=0.1, phi0=0.0, osc=0.0, twotheta=0.0,
    )
    image_header = SMVHeader.from_geometry(**kwargs)
    noise_header = SMVHeader.from_geometry(noise_image=True, **kwargs)
    assert smv_header(image_header) == (GOLDEN / case / "image.smv").read_bytes()[:512]
    assert smv_header(noise_header) == (GOLDEN / case / "noise.smv").read_bytes()[:512]


@pytest.mark.parametrize("case, scale, adc", [("smv_scale_adc", 200.0, 10.0),
                                              ("smv_autoscale_pgmscale", 0.0, 40.0)])
def test_golden_int_image(case, scale, adc, tmp_path):
    ref_bytes = (GOLDEN / case / "image.smv").read_bytes()
    header, ref = read_smv(GOLDEN / case / "image.smv")
    assert ref.shape == (128, 128) and ref.dtype == np.uint16
    image = _float_image(case, ref.shape)
    max_I = max(0.0, float(image.max()))
    printed = re.search(r"max_I = (\S+)", (GOLDEN / case / "stdout.txt").read_text()).group(1)
    assert f"{max_I:g}" == printed
    used = int_image_scale(max_I, scale)
    assert f"intfile_scale = {used:g}\n" in (GOLDEN / case / "stdout.txt").read_text()
    ints = int_image(image, used, adc)
    np.testing.assert_array_equal(ints, ref)  # exact, not merely within one count
    write_smv(tmp_path / "out.smv", ints, header)
    assert (tmp_path / "out.smv").read_bytes() == ref_bytes


def test_int_image_rounds_through_float32():
    # t + 0.5 = 1000.99999999 in double; floorf sees it rounded to float 1001.0
    assert int_image(np.float32([[1.0]]), 960.49999999, 40.0)[0, 0] == 1001
    assert int_image(np.float32([[1.0]]), 960.4, 40.0)[0, 0] == 1000
    assert int_image(np.float32([[1.0]]), 960.5, 40.0)[0, 0] == 1001


def test_int_image_clipping_nan_and_roi():
    img = np.float32([[-5.0, 1e9, np.nan], [0.25, 2.0, 3.0]])
    roi = np.array([[True, True, True], [True, False, True]])
    out = int_image(img, 1.0, 0.0, roi_mask=roi)
    assert out.dtype == np.uint16
    assert out.tolist() == [[0, 65535, 0], [0, 0, 3]]


def test_int_image_scale():
    assert int_image_scale(110.0) == 500.0
    assert int_image_scale(0.0) == 1.0 and int_image_scale(-3.0, -1.0) == 1.0
    assert int_image_scale(110.0, 2.5) == 2.5


def _header(**over):
    fields = parse_smv_header((GOLDEN / "cubic_default" / "smv_header.txt").read_bytes())
    fields.update(SIZE1="3", SIZE2="2", **over)
    return fields


def test_write_read_round_trip_both_orders(tmp_path):
    data = np.arange(6, dtype=np.uint16).reshape(2, 3) * 4097
    for order in ("little_endian", "big_endian"):
        write_smv(tmp_path / "x.smv", data, _header(BYTE_ORDER=order))
        raw = (tmp_path / "x.smv").read_bytes()
        assert len(raw) == 512 + 12
        assert raw[512:] == data.astype("<u2" if order[0] == "l" else ">u2").tobytes()
        header, back = read_smv(tmp_path / "x.smv")
        assert header["BYTE_ORDER"] == order and header["DIALS_ORIGIN"] == "-12.9,12.9,-100"
        np.testing.assert_array_equal(back, data)
        assert back.dtype == np.uint16 and back.dtype.isnative


def test_read_other_header_sizes_and_trailing_bytes():
    data = np.array([[1, 2], [3, 258]], dtype=">u2")
    text = b"{\nHEADER_BYTES= 1024;\nDIM=2;\nBYTE_ORDER=big_endian;\nTYPE=unsigned_short;\n" \
           b"SIZE1=2;\nSIZE2=2;\nSIZE1=2;\n}\f"
    header, image = parse_smv(text.ljust(1024, b" ") + data.tobytes() + b"extra")
    assert header["HEADER_BYTES"] == "1024"
    assert image.tolist() == [[1, 2], [3, 258]]


def test_write_checks_shape_and_dtype(tmp_path):
    with pytest.raises(ValueError):
        write_smv(tmp_path / "x.smv", np.zeros((3, 2), np.uint16), _header())
    with pytest.raises(TypeError):
        write_smv(tmp_path / "x.smv", np.zeros((2, 3), np.int32), _header())
    with pytest.raises(ValueError):
        smv_header(_header(COLOUR="blue"))
    assert not list(tmp_path.iterdir())


def _file(**over):
    text = "{\nHEADER_BYTES=512;\n" + "".join(f"{k}={v};\n" for k, v in over.items()) + "}\f"
    return text.encode().ljust(512, b" ")


@pytest.mark.parametrize(
    "data, pattern",
    [
        (b"P5\n2 2\n255\n" + bytes(600), "does not start like an SMV header"),
        (b"", "does not start like an SMV header"),
        (b"{\nHEADER_BYTES=512;\n", "truncated header"),
        (_file(SIZE2=2) + bytes(8), "SIZE1"),
        (_file(SIZE1=2) + bytes(8), "SIZE2"),
        (_file(SIZE1="x", SIZE2=2) + bytes(8), "SIZE1"),
        (_file(SIZE1=2, SIZE2=2) + bytes(7), "truncated data"),
        (_file(SIZE1=2, SIZE2=2, BYTE_ORDER="middle") + bytes(8), "BYTE_ORDER"),
        (_file(SIZE1=2, SIZE2=2, TYPE="float") + bytes(8), "TYPE"),
        (b"{\nHEADER_BYTES=16;\nSIZE1=1;SIZE2=1;}" + bytes(2), "closing"),
    ],
)
def test_malformed(data, pattern, tmp_path):
    path = tmp_path / "bad.img"
    path.write_bytes(data)
    with pytest.raises(SMVFormatError, match=re.escape(str(path)) + ".*" + pattern):
        read_smv(path)


@st.composite
def _near_valid(draw):
    items = draw(st.lists(st.sampled_from([
        "SIZE1=2", "SIZE2=3", "SIZE1=0", "BYTE_ORDER=big_endian", "BYTE_ORDER=little_endian",
        "TYPE=unsigned_short", "DIM=2", "junk", "=", "SIZE2=-1", "HEADER_BYTES=64",
    ]), max_size=8))
    size = draw(st.sampled_from([64, 512, 600, 20]))
    head = ("{\nHEADER_BYTES=%d;\n" % size + ";\n".join(items) + ";\n}\f").encode()
    return head.ljust(size, b" ") + draw(st.binary(max_size=16))


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.binary(max_size=700), _near_valid(),
                 st.binary(max_size=600).map(lambda b: b"{\nHEADER_BYTES=" + b)))
def test_fuzz_bytes(data):
    try:
        header, image = parse_smv(data)
    except SMVFormatError:
        return
    assert image.shape == (int(header["SIZE2"]), int(header["SIZE1"]))


def test_overlong_header_grows_header_bytes():
    fields = _header()
    for key in ("PIXEL_SIZE", "DISTANCE", "WAVELENGTH", "PHI", "OSC_START", "OSC_RANGE",
                "TWOTHETA", "XDS_ORGX", "XDS_ORGY", "CLOSE_DISTANCE", "BEAM_CENTER_X"):
        fields[key] = "-1.23457e-100"
    fields["DIALS_ORIGIN"] = "-1.23457e-100,-1.23457e-100,-1.23457e-100"
    head = smv_header(fields)
    assert len(head) == 1024 and head.startswith(b"{\nHEADER_BYTES=1024;\n")
    header, image = parse_smv(head + bytes(12))
    assert image.shape == (2, 3) and header["TWOTHETA"] == "-1.23457e-100"
    assert smv_header(header) == head
