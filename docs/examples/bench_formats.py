"""What writing NeXus NXmx, CBF and PNG costs next to rendering, and how small the files are.

Renders ``--renders`` images of a 1024 x 1024 rotation series (a
lysozyme-sized cell, 0.1 degree per image, a water background), then writes
``--images`` noisy images (Poisson deviates of the rendered ones, cycled)
through :class:`bragg_core.io.nexus.NexusWriter` with bitshuffle-LZ4 and
gzip, as float32 photon counts and as int32 counts; and the same images as
full CBF files.  Reports per image: render time, write time, and the bytes
per image against raw float32 (4 bytes per pixel).

    python docs/examples/bench_formats.py --images 100 --renders 3 --json out.json

Rendering dominates: the write time per image is compared with the render
time per image (the renders are not repeated 100 times: each image of a
series costs the same).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pixels", type=int, default=1024)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--renders", type=int, default=3)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--fluence", type=float, default=3e24, help="photons/m^2 (sets the background level)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from bragg_core import simulate
    from bragg_core.experiment import Beam, Crystal, Detector, Experiment
    from bragg_core.io._imageset import geometry_from_experiment
    from bragg_core.io.cbf import cbf_bytes
    from bragg_core.io.nexus import NexusWriter

    n = args.pixels
    exp = Experiment(
        beam=Beam(wavelength_A=1.0, fluence_photons_per_m2=args.fluence, water_size_um=50.0),
        detector=Detector(fpixels=n, spixels=n, pixel_size_mm=0.1, distance_mm=100.0),
        crystal=Crystal(cell_A_deg=(79.1, 79.1, 38.0, 90, 90, 90), N_cells=(10, 10, 10), default_F=100.0,
                        misset_deg=(10.0, 20.0, 30.0), phi_start_deg=0.0, osc_deg=0.1, phi_steps=2),
    )
    from dataclasses import replace

    renders, times = [], []
    for i in range(args.renders):
        e = replace(exp, crystal=replace(exp.crystal, phi_start_deg=0.1 * i))
        t0 = time.perf_counter()
        sim = simulate(e, backend=args.backend, dtype="float32")
        img = np.asarray(sim.image, dtype=np.float32)
        times.append(time.perf_counter() - t0)
        renders.append(img)
    render_s = float(np.median(times))
    rng = np.random.default_rng(1)
    noisy = [rng.poisson(np.maximum(r, 0)).astype(np.float32) for r in renders]
    raw = 4 * n * n
    out = {"pixels": n, "images": args.images, "fluence": args.fluence, "render_s_per_image": render_s,
           "mean_photons_per_pixel": float(np.mean(renders[0])), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, comp, dtype in (("nexus_bslz4_float32", "bslz4", "float32"),
                                   ("nexus_bslz4_int32", "bslz4", "int32"),
                                   ("nexus_gzip_float32", "gzip", "float32")):
            path = os.path.join(tmp, label + ".nxs")
            t0 = time.perf_counter()
            with NexusWriter(path, exp, n_images=args.images, compression=comp, dtype=dtype) as w:
                for i in range(args.images):
                    w.append(noisy[i % len(noisy)])
            dt = time.perf_counter() - t0
            size = os.path.getsize(path)
            out["cases"][label] = {"write_s_per_image": dt / args.images, "bytes_per_image": size / args.images,
                                   "raw_float32_over_file": raw * args.images / size,
                                   "write_over_render": dt / args.images / render_s}
        g = geometry_from_experiment(exp, n_images=args.images)
        t0 = time.perf_counter()
        sizes = 0
        for i in range(min(args.images, 10)):
            data = cbf_bytes(noisy[i % len(noisy)], g, i)
            with open(os.path.join(tmp, f"img_{i + 1:04d}.cbf"), "wb") as fh:
                fh.write(data)
            sizes += len(data)
        k = min(args.images, 10)
        dt = (time.perf_counter() - t0) / k
        out["cases"]["cbf_byte_offset"] = {"write_s_per_image": dt, "bytes_per_image": sizes / k,
                                           "raw_float32_over_file": raw / (sizes / k),
                                           "write_over_render": dt / render_s}
        # noise-free float image (smooth values: little to compress)
        path = os.path.join(tmp, "clean.nxs")
        with NexusWriter(path, exp, n_images=1, compression="bslz4") as w:
            w.append(renders[0])
        out["cases"]["nexus_bslz4_noise_free_float32_one_image"] = {
            "bytes_per_image": os.path.getsize(path), "raw_float32_over_file": raw / os.path.getsize(path)}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
