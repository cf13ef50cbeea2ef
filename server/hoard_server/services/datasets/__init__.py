"""The datasets face: HDF5 files of a repository with TVB's semantics (plain Python)."""
