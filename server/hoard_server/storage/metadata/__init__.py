"""The metadata cache's engine: order-preserving encodings (``encoding``) and the LMDB
index of records with typed secondary indexes per field (``index``)."""
