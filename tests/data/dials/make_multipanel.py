# A two-level detector (2 groups of 2 modules) built with dxtbx and written by its ExperimentList;
# dxtbx's own global panel frames are saved for comparison.
import json

from dxtbx.model import BeamFactory, Crystal, Detector, GoniometerFactory, ScanFactory
from dxtbx.model.experiment_list import Experiment, ExperimentList
from scitbx import matrix

d = Detector()
root = d.hierarchy()
root.set_frame((1, 0, 0), (0, -1, 0), (-20.0, 25.0, -120.0))
k = 0
for g in range(2):
    grp = root.add_group()
    # each group tilted 10 degrees about the lab x axis, the second shifted down
    R = matrix.col((1, 0, 0)).axis_and_angle_as_r3_rotation_matrix((-1) ** g * 10.0, deg=True)
    grp.set_local_frame(tuple(R * matrix.col((1, 0, 0))), tuple(R * matrix.col((0, 1, 0))), (0.0, 26.0 * g, 2.0 * g))
    for m in range(2):
        p = grp.add_panel()
        p.set_name(f"g{g}m{m}")
        p.set_image_size((192, 96))
        p.set_pixel_size((0.2, 0.2))
        p.set_trusted_range((-1, 65535))
        p.set_thickness(0.45)
        p.set_mu(3.9)
        p.set_material("Si")
        q = matrix.col((0, 0, 1)).axis_and_angle_as_r3_rotation_matrix(2.0 * m - 1.0, deg=True)
        p.set_local_frame(tuple(q * matrix.col((1, 0, 0))), tuple(q * matrix.col((0, 1, 0))), (40.0 * m, 0.5, 0.0))
        k += 1
beam = BeamFactory.simple(0.9793)
gonio = GoniometerFactory.known_axis((1, 0, 0))
scan = ScanFactory.make_scan((1, 10), 1.0, (5.0, 0.5), {i + 1: float(i) for i in range(10)})
cr = Crystal((55.0, 0.0, 0.0), (0.0, 66.0, 0.0), (0.0, 0.0, 77.0), space_group_symbol="P 1")
el = ExperimentList([Experiment(beam=beam, detector=d, goniometer=gonio, scan=scan, crystal=cr)])
el.as_file("multipanel_dxtbx.expt")
glob = [dict(name=p.get_name(), origin=list(p.get_origin()), fast=list(p.get_fast_axis()),
             slow=list(p.get_slow_axis()), s0_beam_centre_mm=list(p.get_beam_centre(beam.get_s0()))) for p in d]
json.dump(dict(panels=glob, s0=list(beam.get_s0())), open("multipanel_dxtbx_frames.json", "w"), indent=1)
