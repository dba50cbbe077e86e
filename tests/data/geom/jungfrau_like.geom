; Jungfrau-like detector: eight 64 x 32 modules, 75 um pixels (a scaled-down 4M layout)
clen = 0.080
res = 13333.333
adu_per_eV = 0.0042
photon_energy = 12400
coffset = 0.0
data = /entry/data/data
dim0 = %
dim1 = ss
dim2 = fs

m0/min_fs = 0
m0/max_fs = 63
m0/min_ss = 0
m0/max_ss = 31
m0/fs = +1.0x +0.0y
m0/ss = +0.0x +1.0y
m0/corner_x = -70.6667
m0/corner_y = 52.0000

m1/min_fs = 0
m1/max_fs = 63
m1/min_ss = 32
m1/max_ss = 63
m1/fs = +1.0x +0.0y
m1/ss = +0.0x +1.0y
m1/corner_x = 6.6667
m1/corner_y = 52.0000

m2/min_fs = 0
m2/max_fs = 63
m2/min_ss = 64
m2/max_ss = 95
m2/fs = +1.0x +0.0y
m2/ss = +0.0x +1.0y
m2/corner_x = -70.6667
m2/corner_y = 6.6667

m3/min_fs = 0
m3/max_fs = 63
m3/min_ss = 96
m3/max_ss = 127
m3/fs = +1.0x +0.0y
m3/ss = +0.0x +1.0y
m3/corner_x = 6.6667
m3/corner_y = 6.6667

m4/min_fs = 0
m4/max_fs = 63
m4/min_ss = 128
m4/max_ss = 159
m4/fs = +1.0x +0.0y
m4/ss = +0.0x +1.0y
m4/corner_x = -70.6667
m4/corner_y = -38.6667

m5/min_fs = 0
m5/max_fs = 63
m5/min_ss = 160
m5/max_ss = 191
m5/fs = +1.0x +0.0y
m5/ss = +0.0x +1.0y
m5/corner_x = 6.6667
m5/corner_y = -38.6667

m6/min_fs = 0
m6/max_fs = 63
m6/min_ss = 192
m6/max_ss = 223
m6/fs = +1.0x +0.0y
m6/ss = +0.0x +1.0y
m6/corner_x = -70.6667
m6/corner_y = -84.0000

m7/min_fs = 0
m7/max_fs = 63
m7/min_ss = 224
m7/max_ss = 255
m7/fs = +1.0x +0.0y
m7/ss = +0.0x +1.0y
m7/corner_x = 6.6667
m7/corner_y = -84.0000

bad_gap/min_x = -10
bad_gap/max_x = 10
bad_gap/min_y = -2
bad_gap/max_y = 2
rigid_group_top = m0,m1,m2,m3
rigid_group_collection_halves = top
