"""Quantization methods, sensitivity and the golden integer model; see issues 3 and 6."""
