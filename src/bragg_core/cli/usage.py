"""The command-line usage text."""

USAGE = """\
usage: bragg_core -cell a b c alpha beta gamma (or -mat A.mat) -hkl Fs.hkl (or -default_F F) [options]

Simulates the absolute-scale diffraction image of a nanocrystal (nanoBragg flags).

crystal:
  -cell a b c al be ga   unit cell (Angstrom, degrees)       -mat FILE    MOSFLM orientation matrix
  -hkl FILE              h k l F text file                   -default_F F amplitude of unlisted reflections
  -mtz FILE [-mtz_column LABEL[,LABEL]]  -sfcif FILE          measured |F| (or sqrt I), expanded to P1
  -model FILE.pdb|.cif   F-calc from atoms (to -dmin, else the detector's corners)  -bulk_solvent k_sol B_sol
  -misset x y z|random   crystal rotation about x, y, z (deg) -misset_seed N
  -N n, -Na -Nb -Nc      unit cells along each axis          -xtalsize mm (also -xtal_thick/_width/_height)
  -square_xtal | -round_xtal | -gauss_xtal | -tophat_spots    shape transform; -fudge f
  -mosaic deg  -mosaic_dom n  -mosaic_seed N                  isotropic mosaic spread and domains
  -phi deg  -osc deg  -phistep deg  -phisteps n               spindle rotation
  -interpolate | -nointerpolate                               tricubic F interpolation (auto: N <= 2)
  -dmin A                skip paths with resolution finer than dmin
beam:
  -lambda A | -energy eV -dispersion %  -dispsteps n          wavelength and spectral spread
  -divergence mrad  -hdivrange/-vdivrange mrad  -hdivstep/-vdivstep mrad  -hdivsteps/-vdivsteps/-divsteps n
  -round_div | -square_div                                    elliptical (default) or full divergence grid
  -sourcefile FILE       X Y Z weight lambda per source      -fluence ph/m^2 | -flux ph/s -exposure s -beamsize mm
  -polar K  -nopolar     Kahn polarization factor (default 0: unpolarised)
  -water um              water background around the crystal
detector:
  -distance mm  -close_distance mm  -pixel mm  -detpixels n (-detpixels_f/_s)  -detsize mm (-detsize_f/_s)
  -mosflm | -denzo | -adxv | -xds | -dials                    beam-centre convention (default mosflm)
  -Xbeam -Ybeam mm  -Xclose -Yclose mm  -ORGX -ORGY px        beam centre / near point / XDS origin
  -fdet_vector -sdet_vector -odet_vector -beam_vector -polar_vector -spindle_axis -twotheta_axis x y z
  -pivot beam|sample     (custom geometry only)              -detector_rotx/_roty/_rotz deg  -twotheta deg
  -curved_det  -point_pixel                                   -detector_thick um -detector_abs um -detector_thicksteps n
  -oversample n  -oversample_omega  -oversample_polar  -oversample_thick
  -roi xmin xmax ymin ymax  -mask FILE.img  -img FILE.img  -trace_pixel SLOW FAST  -printout_pixel FAST SLOW
output:
  -floatfile FILE (floatimage.bin)  -intfile FILE (intimage.img)  -noisefile FILE (noiseimage.img)
  -pgmfile FILE (image.pgm)  -scale s  -pgmscale s  -adc offset (40)  -seed N  -nonoise  -nopgm  -noprogress
  -nimages N             N images, image i from phi + i*osc; '#' runs in names -> image number (img_####.img)
  -exptfile FILE         write the DIALS experiment list of what was simulated  -dials_header  SMV header for DIALS
  -nexusfile FILE.nxs    NeXus NXmx (HDF5) of every image and panel   -nexus_compression bslz4|gzip|none
  -cbffile FILE_####.cbf full CBF (imgCIF geometry) per image, every panel  -pngfile FILE.png  preview
  -png_scale asinh|log   -format_image noise|float  what these three hold: the noise image's integer counts
                         (default when the run makes one) or the noise-free float image (default with -nonoise)
detector model and background (noisify's and nonBragg's terms):
  -psf gauss|fiber  -psf_fwhm um (46)  -psf_radius px  -readout ADU  -flicker frac  -calibration frac
  -calib_seed n  -gain ADU/photon    any of these: -noisefile holds the detector model's image (-seed, -adc)
  -bg_stol FILE|water|air|ice|nanoice|shortwater|unity (or -bg_4stol, -bg_Q FILE)  amorphous sample added
  -bg_thick mm  -bg_width mm  -bg_height mm (0.1)  -bg_density g/cm^3  -bg_MW g/mol  -bg_molecules N
detectors and DIALS:
  -expt FILE             DIALS experiment list in (beam, panels, goniometer, scan, crystal); flags override
  -geom FILE             CrystFEL geometry file in (panels; several panels: -floatfile holds them in order)
engine:
  -backend numpy|torch|cupy|jax|dask|array_api_strict  -device NAME  -dtype float32|float64
  -memory_budget MiB     working memory per tile and thread (default 16)
  -force                 run even when the pre-run estimate says it will not fit or finish (memory, work, disk)
  -run_report FILE       write what the run did as JSON (counts, statistics, workers, their memory)
"""
