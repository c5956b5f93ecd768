"""DualDistill: distil a text reasoner and a code agent into one student (arXiv 2507.05707)."""

__version__ = "0.1.0"
