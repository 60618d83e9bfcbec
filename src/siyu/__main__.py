"""``python -m siyu`` runs the CLI."""

from siyu.cli import main

main()
