"""Layer 0: params.yaml, read strictly into one typed config per section (params); how work is
spread over forked processes (parallel); the settings shared by the boosted tree models (trees)."""
