"""arcal: routing-conditional calibration in Attention-Residual transformers."""

__version__ = "0.1.0"
