"""vcc: quantize and compile semantic-segmentation CNNs to TVM artifacts."""

__version__ = "0.1.0"
