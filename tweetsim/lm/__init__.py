"""Layer 3: language models. Loading, quantization, LoRA, the training loop, prompts, the image
prefix, generation, and the writer LM's per-regime fine-tuning and generation (regimes)."""
