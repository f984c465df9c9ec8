"""Layer 2: text. Sentence embeddings, retrieval by them, and the text metrics."""
