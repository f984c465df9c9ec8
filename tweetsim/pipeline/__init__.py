"""Layer 5: the pipeline's plumbing. The stages' entry (stage: logging shown, one-line errors, the CPU
kernels held to AVX2 at import), the headline evaluate writes (report) and the README and docs tables
rendered from the metrics files (tables)."""
