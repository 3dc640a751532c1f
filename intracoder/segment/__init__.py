"""The learned face mask: a segmentation net taught on the facesets themselves (synthetic
occluders, labels drawn in the studio), applied to facesets for training and to frames in
convert."""
