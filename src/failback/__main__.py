"""``python -m failback`` runs the CLI."""

from .cli import main

main()
