"""Item-tokenizer benchmark for generative recommendation."""

__version__ = "0.1.0"
