"""edge-bus: breast-ultrasound AI at the bedside."""

__version__ = "0.1.0"
