"""The storage engine: pack format, frame table, object index, writer, repository."""
