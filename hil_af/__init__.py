"""hil-af: dual-pixel autofocus for Raspberry Pi camera rigs.

Importing the package touches no hardware and needs none of the optional
extras (picamera2, libcamera, torch): drivers import their libraries lazily.
"""

__version__ = "0.1.0"
