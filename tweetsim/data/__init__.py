"""Layer 1: tables. The tweet schema, the official files, media strings, fetching, side tables, splits."""
