"""The datasets face: HDF5 files of a repository with TVB's semantics (plain Python):
HDF5StorageManager's operations (``service.DatasetService``) and the FilesHelper side
(``files``), over the engine in ``storage/hdf5``."""
