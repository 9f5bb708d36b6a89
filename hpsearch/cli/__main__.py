"""`python -m hpsearch.cli`: what supervisors and trial groups start, as the `hpsearch` script does."""

from hpsearch.cli import main

main()
