"""`python -m hpsearch.cli`: what supervisors and trial groups start, as `hpsearch` does."""

from hpsearch.cli import main

main()
