"""farm: benchmark TensorFlow Lite / LiteRT models on a lab of Android phones over adb."""

__version__ = "0.1.0"
