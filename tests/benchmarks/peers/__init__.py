"""The datasets benchmark's peers, each behind the same few calls (``bench_datasets.py``).

- ``local_h5py``: h5py on a local file in the benchmark's own process (the ceiling);
- ``tvb_storage``: TVB's own ``HDF5StorageManager`` (tvb-storage) on a local file (the anchor);
- ``hsds``: HSDS, the HDF Group's HDF5 REST service, run here over unix sockets, and its h5py-like
  client h5pyd (the nearest networked peer).
"""
