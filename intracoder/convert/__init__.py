"""Convert stage building blocks: colour transfer and blending of a generated face into a frame."""
