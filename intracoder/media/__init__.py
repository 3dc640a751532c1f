"""Media in and out: video through the ffmpeg bundled with imageio-ffmpeg, images via Pillow."""
