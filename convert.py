"""`python convert.py --model DIR INPUT OUTPUT [...]`: the same as `intracoder convert`."""

import sys

from intracoder.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["convert", *sys.argv[1:]]))
