"""The metadata cache as a service, in plain Python: the filter language (``filters``),
queries over the index (``query``), the directory sync (``sync``) and one cache as the
RPC layer will call it (``cache``)."""
