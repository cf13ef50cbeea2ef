"""The metadata cache's shared half: typed records, extractors and the directory scan.

The SDK uses it to extract on a workstation and push records; the daemon imports the same
code to extract files under its sync roots. No dependency beyond the SDK's own (h5py is
imported only by the ``hdf5`` extractor, when it reads a file).
"""

from hoard.metadata.records import FieldType, FileRecord, FileSignature, Value

__all__ = ["FieldType", "FileRecord", "FileSignature", "Value"]
