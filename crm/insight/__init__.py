"""Customer insight in the application: the graph store, the 360 profile, tags."""
