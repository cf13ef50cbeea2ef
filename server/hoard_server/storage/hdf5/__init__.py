"""HDF5 files of a repository: which are open, who may touch them, and keeping them valid
across a crash (the engine under ``services/datasets``)."""
