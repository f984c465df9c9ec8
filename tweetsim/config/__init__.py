"""Layer 0: params.yaml, read strictly into one typed config per section."""
