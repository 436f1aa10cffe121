"""CoCoS: self-correcting code generation for small language models (Cho et al., EMNLP 2025 Findings)."""

__version__ = "0.1.0"
