"""The metadata cache as a service, in plain Python: the filter language (``filters``),
queries over the index (``query``) and the directory sync (``sync``)."""
