"""Who may call the daemon: bearer tokens and their roles (``tokens``), and the interceptor
that checks every call against them."""
