"""Low-level image operations shared by several stages (training data, convert), with no
dependency on either: colour transfer between aligned crops (colour_transfer.py)."""
