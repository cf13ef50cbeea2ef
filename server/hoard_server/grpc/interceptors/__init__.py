"""Server interceptors, one per file, named for what they add."""
