"""Training data: augmentation of one face (augmentation.py) and the two-faceset batch
source with its prefetching thread pool (dataset.py)."""
