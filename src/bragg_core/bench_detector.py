"""Timing of the background and detector model against the Bragg render and the reference companions.

``python -m bragg_core.bench_detector [--size 4096] [--backends numpy,torch] [--device cuda] [--dtype float64]
[--median-photons M] [--reference-dir DIR] [--rounds 2] [--json FILE]``

For each backend it times, in one process and after one warm-up call, the
Bragg render of the benchmark geometry (``bench_4096``: 100 A cubic cell,
N = 5, lambda 6.2 A, 100 mm, 0.1 mm pixels), the water background of a
0.1 mm sample on the same detector, the PSF (Gaussian, 100 um, radius 4) of
that image, and the noise (flicker 2 %, calibration 3 %, Poisson, read-out 3
ADU).  The PSF and the noise get the Bragg image plus the background, as
rendered (about 10^11 photons a pixel: the noise's normal approximation),
or, with ``--median-photons M``, that image scaled to a median of M photons
(M below 10: Poisson by inversion; 10 to 10^6: by transformed rejection, as
in most real images).  With ``--reference-dir`` holding ``nonBragg`` and ``noisify`` binaries
that you built yourself, it runs them on the same geometry and image in the
same run (one thread) and reports their wall times.  Results print as a
table and, with ``--json``, are saved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _experiment(size: int):
    from .experiment import Beam, Crystal, Detector, Experiment

    return Experiment(beam=Beam(wavelength_A=6.2),
                      detector=Detector(fpixels=size, spixels=size, pixel_size_mm=0.1, distance_mm=100.0,
                                        oversample=1),
                      crystal=Crystal(cell_A_deg=(100, 100, 100, 90, 90, 90), N_cells=(5, 5, 5), default_F=100.0))


def _sync(x):
    from ._backend import to_numpy

    to_numpy(x.reshape(-1)[:1] if hasattr(x, "reshape") else x)  # waits for the device / lazy graph


def _best(fn, rounds: int):
    fn()  # warm-up (imports, compilation, caches)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run_backend(name: str, size: int, dtype: str, rounds: int, median_photons: float | None = None,
                device: str | None = None) -> dict:
    from . import simulate
    from ._backend import enable_float64, get_context, to_numpy
    from .amorphous import amorphous_background
    from .detector_model import DetectorModel, apply_detector_model

    enable_float64(name, dtype)
    exp = _experiment(size)
    ctx = get_context(backend=name, device=device, dtype=dtype)
    out: dict = {"backend": name, "device": str(ctx.device), "dtype": dtype, "size": size}
    holder: dict = {}

    def render():
        holder["bragg"] = simulate(exp, backend=name, device=device, dtype=dtype).image
        _sync(holder["bragg"])

    def background():
        holder["bg"] = amorphous_background(exp, "water", thickness_mm=0.1, backend=name, device=device,
                                            dtype=dtype)
        _sync(holder["bg"])

    psf_model = DetectorModel(psf="gauss", psf_fwhm_um=100.0, psf_radius=4, noise=False)
    noise_model = DetectorModel(flicker=0.02, calibration=0.03, readout_adu=3.0, seed=1)

    def psf():
        _sync(apply_detector_model(holder["image"], psf_model).photons)

    def noise():
        _sync(apply_detector_model(holder["image"], noise_model).image)

    out["bragg_s"] = _best(render, rounds)
    out["background_s"] = _best(background, rounds)
    holder["image"] = ctx.asarray(holder["bragg"]) + holder["bg"]
    if median_photons is not None:
        med = float(np.median(np.asarray(to_numpy(holder["image"]))))
        holder["image"] = holder["image"] * (median_photons / med)
        out["median_photons"] = median_photons
    out["psf_s"] = _best(psf, rounds)
    out["noise_s"] = _best(noise, rounds)
    out["detector_total_s"] = out["background_s"] + out["psf_s"] + out["noise_s"]
    holder["host_image"] = np.asarray(to_numpy(holder["image"]), dtype=np.float32)
    out["_image"] = holder["host_image"]
    return out


def run_reference(ref_dir: str, size: int, image: np.ndarray) -> dict:
    nb, nz = os.path.join(ref_dir, "nonBragg"), os.path.join(ref_dir, "noisify")
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        stol = os.path.join(tmp, "water.stol")
        from importlib import resources

        with open(stol, "w") as fh:
            fh.write(resources.files("bragg_core").joinpath("data", "stol", "water.stol").read_text())
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [nb, "-stol", stol, "-detpixels", str(size), "-pixel", "0.1", "-distance", "100", "-lambda", "6.2",
               "-thickness", "0.1", "-nonoise", "-nopgm", "-noprogress", "-floatfile", os.path.join(tmp, "bg.bin"),
               "-intfile", os.path.join(tmp, "bg.img")]
        t = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL)
        out["nonBragg_s"] = time.perf_counter() - t
        img = os.path.join(tmp, "in.bin")
        image.astype("<f4").tofile(img)
        base = [nz, "-floatfile", img, "-detpixels", str(size), "-pixel", "0.1", "-nopgm",
                "-intfile", os.path.join(tmp, "i.img"), "-noisefile", os.path.join(tmp, "n.img")]
        t = time.perf_counter()
        subprocess.run(base + ["-nonoise", "-psf", "gauss", "-psf_fwhm", "100", "-psf_radius", "4"], cwd=tmp,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        out["noisify_psf_s"] = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(base + ["-flicker", "0.02", "-calibration", "0.03", "-readout", "3", "-seed", "1"], cwd=tmp,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        out["noisify_noise_s"] = time.perf_counter() - t
    out["reference_total_s"] = out["nonBragg_s"] + out["noisify_psf_s"] + out["noisify_noise_s"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bragg_core.bench_detector", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--backends", default="numpy")
    p.add_argument("--device", default=None, help="the backends' device, e.g. cuda (default: each one's own)")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--median-photons", type=float, default=None,
                   help="scale the image the PSF and noise get to this median (photons)")
    p.add_argument("--reference-dir", default=None, help="folder holding nonBragg and noisify binaries")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from ._backend import BackendError

    if a.median_photons is not None and not a.median_photons > 0:
        p.error("--median-photons must be a positive number of photons")
    rows = []
    image = None
    for name in [b.strip() for b in a.backends.split(",") if b.strip()]:
        try:
            r = run_backend(name, a.size, a.dtype, a.rounds, a.median_photons, a.device)
        except BackendError as exc:
            p.error(f"--backends/--device: {exc}")
        image = r.pop("_image")
        rows.append(r)
    ref = run_reference(a.reference_dir, a.size, image) if a.reference_dir else {}
    scaled = "" if a.median_photons is None else f", PSF and noise on an image of median {a.median_photons:g} photons"
    print(f"{a.size}^2 {a.dtype}, best of {a.rounds} after a warm-up (seconds){scaled}")
    print("backend  bragg  background  psf  noise  bg+psf+noise  (bg+psf+noise)/bragg")
    for r in rows:
        name = r["backend"] + ("" if r["device"] == "cpu" else ":" + r["device"])
        print(f"{name:8s} {r['bragg_s']:.3f}  {r['background_s']:.3f}  {r['psf_s']:.3f}  {r['noise_s']:.3f}  "
              f"{r['detector_total_s']:.3f}  {r['detector_total_s'] / r['bragg_s']:.2f}")
    if ref:
        print("reference (1 thread): " + "  ".join(f"{k} {v:.3f}" for k, v in ref.items()))
    if a.json:
        from .io import atomic_write

        atomic_write(a.json, json.dumps({"rows": rows, "reference": ref}, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
