"""The face-swap model: configs and presets (config.py, Keras-free), building blocks
(blocks.py), the DFL-style loss (losses.py) and the shared-encoder autoencoder
(autoencoder.py)."""
