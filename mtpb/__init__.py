"""mtpb: a harness for multi-turn program synthesis benchmarks."""
__version__ = "0.1.0"
