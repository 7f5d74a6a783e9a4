"""`python -m fsgs_kb` runs the command line, as the installed `fsgs-kb` does."""

from fsgs_kb.cli import main

main()
