"""The datasets face: TVB's HDF5StorageManager (``service.DatasetService``) and its
FilesHelper side, over a repository's HDF5 files (``storage/hdf5``)."""
