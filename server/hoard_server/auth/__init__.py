"""Who may call the daemon: bearer tokens and their roles (``tokens``), the role each method
needs (``access``), and the interceptor that checks every call against them
(``interceptor``)."""
