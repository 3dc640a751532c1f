"""Media in and out: video through PyAV (FFmpeg's libraries in a wheel), images via Pillow."""
