"""Layer 2: images. Image files and frames, the per-image result cache, shards, captioning, OCR."""
