"""`python train.py --a DIR --b DIR --model DIR [...]`: the same as `intracoder train`."""

import sys

from intracoder.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
