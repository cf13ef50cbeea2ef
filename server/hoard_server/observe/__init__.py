"""What the daemon tells its operators: Prometheus metrics (``metrics.py``), the figures
read at scrape time (``storage.py``) and the HTTP endpoint serving them (``endpoint.py``)."""
