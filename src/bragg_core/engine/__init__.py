"""The simulation engine: setup of the sampled arrays, the tiled kernel, statistics."""
