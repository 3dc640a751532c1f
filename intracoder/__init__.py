"""intracoder: a DeepFaceLab-style face-swap trainer that labels what it makes."""

__version__ = "0.1.0"
