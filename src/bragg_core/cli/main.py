"""Entry point of ``python -m bragg_core`` and the ``bragg_core`` console script.

Everything that can fail on bad input (parsing, input files, the experiment
description, the backend) fails before any output is written; outputs are
then replace their destinations together.  Errors print one sentence naming
the problem and exit with status 2 (130 when interrupted; 1 only for an
unexpected internal failure, which names itself); no traceback.
"""

from __future__ import annotations

import os
import sys
import warnings

from .streams import fail, tolerant_stdout
from .usage import USAGE


class _Progress:
    """A tqdm bar on a terminal, nothing otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total > 0 and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                tqdm.monitor_interval = 0  # no monitor thread: a running thread would stop the tile workers forking
                self.bar = tqdm(total=total, unit="px", unit_scale=True, leave=False, file=sys.stderr)
            except ImportError:
                self.bar = None

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fail(msg: str, code: int = 2) -> int:
    return fail(msg, code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from .args import help_requested

    if help_requested(argv):
        sys.stdout.write(USAGE)
        return 0
    if not argv:
        sys.stderr.write(USAGE)
        return 2
    from .args import UsageError, build_config, parse_args

    try:
        cfg = build_config(parse_args(argv), os.getcwd())
    except UsageError as exc:
        if "no structure factors" in str(exc) or "no unit cell" in str(exc):
            sys.stderr.write(USAGE)
        return _fail(str(exc))
    except (OSError, ValueError) as exc:  # unreadable or malformed input files
        return _fail(str(exc))
    from .format_flags import run_with_formats
    from .panel_flags import run_all

    try:
        # every image of -nimages and every panel (run_all), then the NeXus file finished (run_with_formats);
        # standard output survives a reader that exits early, and Python's numerical warnings become
        # WARNING lines after a success (beside an error they are noise)
        with tolerant_stdout(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = run_with_formats(cfg, lambda c: run_all(c, _run))
            if rc == 0:
                for text in dict.fromkeys(str(w.message) for w in caught):
                    print(f"WARNING: {text}")
        return rc
    except KeyboardInterrupt:
        return _fail("interrupted; no output written", 130)
    except ValueError as exc:  # a value only the engine could judge (ExperimentError, BackendError)
        return _fail(f"{exc}; no output written")
    except Exception as exc:  # never a traceback: one line, and the way to see more
        if os.environ.get("BRAGG_CORE_DEBUG"):
            raise
        return _fail(f"{type(exc).__name__}: {exc}; no output written "
                     "(set BRAGG_CORE_DEBUG=1 for the traceback)", 1)


def _run(cfg) -> int:
    import time

    import numpy as np

    from .. import io
    from .._backend import BackendError, enable_float64, to_numpy
    from ..engine.stats import image_stats
    from ..noise import noise_image
    from ..simulate import simulate
    from .validate import check_finite

    for w in cfg.warnings:
        print(f"WARNING: {w}")
    enable_float64(cfg.backend, cfg.dtype)
    exp = cfg.experiment
    det = exp.detector
    n_pix = det.fpixels * det.spixels
    bar = _Progress(n_pix, cfg.progress)
    t0 = time.perf_counter()
    try:
        # the files hold float32: backends that fill a host image store each finished tile as float32
        # the pre-run estimate was checked while the flags were read (with -force and the outputs' disks)
        state = cfg.series_state  # a rotation series: what does not change between images is kept
        sim = simulate(exp, backend=cfg.backend, device=cfg.device, dtype=cfg.dtype,
                       memory_budget_bytes=cfg.memory_budget, progress=bar, store_dtype=np.float32, force=True,
                       reuse=None if state is None else state.get("setup"))
        if state is not None:
            state["setup"] = sim.setup
    except BackendError as exc:
        return _fail(str(exc))
    except MemoryError:
        return _fail("out of memory while rendering, beyond the pre-run estimate; use fewer pixels "
                     "(-detpixels, -roi) or sampling steps; no output written")
    finally:
        bar.close()
    render_s = time.perf_counter() - t0
    setup = sim.setup
    for w in setup.warnings:
        print(f"WARNING: {w}")
    for slow, fast in cfg.trace_pixels:
        _print_trace(setup, slow, fast)
    image = np.asarray(to_numpy(sim.image), dtype=np.float32)
    if cfg.background is not None:  # -bg_stol ...: the amorphous sample's scattering joins the image
        bg = cfg.background.image(exp)
        print(f"amorphous background: {float(np.sum(bg, dtype=np.float64)):.6g} photons, "
              f"max {float(np.max(bg)):.6g} per pixel")
        image = image + bg
        del bg
    check_finite(image, exp)  # NaN or inf is an error naming the inputs, never an image
    st = image_stats(image, setup)
    print(f"  {setup.n_sources} sources, {setup.n_mosaic} mosaic domains, {setup.phi.count} phi steps, "
          f"{setup.oversample}x{setup.oversample} pixel oversample steps, {setup.thick.count} sensor layers")
    print(f"max_I = {st.max_I:g}  at {st.max_I_fast_m:g} {st.max_I_slow_m:g}")
    print(f"mean= {st.mean:g} rms= {st.rms:g} rmsd= {st.rmsd:g}")

    # assemble every output in memory (in bands of rows, to bound temporaries),
    # then write them all atomically
    floats = np.ascontiguousarray(image, dtype="<f4")
    if cfg.float_parts is not None:  # one panel of several: its float image joins the run's one float file
        cfg.float_parts.append(floats)
        outputs = []
    else:
        outputs = [(cfg.outputs.get("-floatfile", "floatimage.bin"), floats)]
    scale = io.int_image_scale(st.max_I, cfg.scale)
    print(f"intfile_scale = {scale:g}")
    ints = _banded(image, setup, np.uint16, lambda band, roi: io.int_image(band, scale, cfg.adc, roi))
    outputs.append((cfg.outputs.get("-intfile", "intimage.img"), _smv_bytes(_header(setup, exp), ints, cfg)))
    del ints
    if cfg.write_pgm:
        pscale = io.pgm_auto_scale(cfg.pgmscale, st.rmsd, scale)
        print(f"pgm_scale = {pscale:g}")
        pixels = _banded(image, setup, np.uint8, lambda band, roi: io.pgm_pixels(band, pscale, roi))
        header = io.pgm_header(det.fpixels, det.spixels, pscale)
        outputs.append((cfg.outputs.get("-pgmfile", "image.pgm"), [header, pixels]))
        del pixels
    noise_counts = None  # the noise image (uint16), for -nexusfile, -cbffile, -pngfile
    if cfg.write_noise and cfg.detector_model is not None:  # -psf, -readout, ...: the detector model's image
        from .detector_flags import detector_noise_image

        counts, photons, overloads = detector_noise_image(image, cfg.detector_model)
        print(f"{photons:.0f} photons on noise image ({overloads} overloads; detector model)")
        nheader = _header(setup, exp, noise_image=True)
        outputs.append((cfg.outputs.get("-noisefile", "noiseimage.img"), _smv_bytes(nheader, counts, cfg)))
        noise_counts = counts
        del counts
    elif cfg.write_noise:
        rng = np.random.Generator(np.random.PCG64(cfg.seed))
        totals = [0.0, 0]

        def noisy(band, roi):
            out = noise_image(band, adc_offset=cfg.adc, roi_mask=roi, rng=rng)
            totals[0] += out.photons
            totals[1] += out.overloads
            return out.image

        counts = _banded(image, setup, np.uint16, noisy)
        print(f"{totals[0]:.0f} photons on noise image ({totals[1]} overloads)")
        nheader = _header(setup, exp, noise_image=True)
        outputs.append((cfg.outputs.get("-noisefile", "noiseimage.img"), _smv_bytes(nheader, counts, cfg)))
        noise_counts = counts
        del counts
    if cfg.formats is not None:  # -nexusfile, -cbffile, -pngfile (cli/format_flags.py): -format_image's choice
        cfg.formats.add(image, exp, noise=noise_counts)
    del noise_counts
    if cfg.fdump_written_from is not None:
        outputs.append(("Fdump.bin", io.fdump_bytes(cfg.fdump_written_from)))
    if "-run_report" in cfg.outputs:
        outputs.append((cfg.outputs["-run_report"], _run_report(sim, st, render_s)))
    try:
        if cfg.output_set is not None:  # a series: every image's outputs wait in one set, committed at the end
            for path, data in outputs:
                cfg.output_set.add(path, data)
        else:  # every output replaces its destination, or none does
            with io.atomic.OutputSet() as out:
                for path, data in outputs:
                    out.add(path, data)
                out.commit()
    except io.atomic.OutputError as exc:
        return _fail(f"{exc}; no file was changed")
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or 'output'}: {exc.strerror or exc}; no file was changed")
    for path, _ in outputs:
        print(f"writing {path}")
    return 0


def _run_report(sim, st, render_s: float) -> bytes:
    """What a run did, as JSON: counts, statistics, workers and the memory forked workers added."""
    import dataclasses
    import json

    s = sim.setup
    info = sim.info
    report = {
        "pixels": [s.detector.spixels, s.detector.fpixels], "sources": s.n_sources,
        "mosaic_domains": s.n_mosaic, "phi_steps": int(s.phi.count), "oversample": s.oversample,
        "sensor_layers": int(s.thick.count), "steps": s.steps,
        "render_s": render_s, "stats": dataclasses.asdict(st),
        "render": None if info is None else dataclasses.asdict(info),
    }
    return (json.dumps(report, indent=1) + "\n").encode()


def _print_trace(setup, slow: int, fast: int) -> None:
    """Every intermediate of one pixel, one ``TRACE name values`` line each (geometry dtype)."""
    import numpy as np

    from .._backend import to_numpy
    from ..engine.trace import trace_pixel

    print(f"TRACE pixel slow={slow} fast={fast}")
    for key, val in trace_pixel(setup, slow, fast).items():
        arr = np.asarray(to_numpy(val), dtype=np.float64)
        flat = " ".join(f"{x:.15g}" for x in arr.ravel()[:48])
        more = f" ... ({arr.size} values, shape {arr.shape})" if arr.size > 48 else ""
        print(f"TRACE {key} {flat}{more}")


def _banded(image, setup, dtype, convert, rows_per_band=None):
    """Apply ``convert(band, roi_mask)`` to bands of rows; returns the assembled array.

    Bands bound the temporaries of the conversions (float64 copies, masks) to
    a few MiB whatever the detector size.
    """
    import numpy as np

    sp, fp = image.shape
    xmin, xmax, ymin, ymax = setup.roi
    cols = (np.arange(fp) >= xmin) & (np.arange(fp) <= xmax)
    all_cols = bool(np.all(cols))
    rows = rows_per_band or max(1, (1 << 19) // max(fp, 1))
    out = np.empty((sp, fp), dtype=dtype)
    for r0 in range(0, sp, rows):  # bands of output rows, in order (the noise stream is sequential)
        r1 = min(sp, r0 + rows)
        if all_cols and r0 >= ymin and r1 - 1 <= ymax:
            roi = None  # the whole band is inside the region of interest
        else:
            rr = np.arange(r0, r1)
            roi = ((rr >= ymin) & (rr <= ymax))[:, None] & cols[None, :]
        out[r0:r1] = convert(image[r0:r1], roi)
    return out


def _smv_bytes(header, data, cfg=None):
    import numpy as np

    from .. import io

    if getattr(cfg, "dials_header", False):  # -dials_header: the beam centre and ADC_OFFSET as DIALS reads them
        from ..io.smv_dials import dials_smv_header

        return [dials_smv_header(header, cfg.adc), np.ascontiguousarray(data, dtype="<u2")]
    return [io.smv_header(header), np.ascontiguousarray(data, dtype="<u2")]


def _header(setup, exp, noise_image=False):
    from .. import io
    from .._backend import to_numpy

    dg = setup.detector
    f = lambda x: float(to_numpy(x))  # noqa: E731
    dials = [float(v) for v in to_numpy(dg.dials_origin_mm)]
    osc = setup.phi.range
    return io.SMVHeader.from_geometry(
        fpixels=dg.fpixels, spixels=dg.spixels, pixel_size=f(dg.pixel_size_m), distance=f(dg.distance_m),
        wavelength=float(exp.beam.wavelength_A) * 1e-10, xbeam=f(dg.Xbeam_m), ybeam=f(dg.Ybeam_m),
        fbeam=f(dg.Fbeam_m), sbeam=f(dg.Sbeam_m), detsize_s=f(dg.detsize_s_m), dials_origin=dials,
        orgx=f(dg.orgx_px), orgy=f(dg.orgy_px), close_distance=f(dg.close_distance_m),
        phi0=f(setup.phi0_rad), osc=osc, twotheta=f(dg.twotheta_rad), noise_image=noise_image,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
