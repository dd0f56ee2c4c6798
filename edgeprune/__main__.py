"""`python -m edgeprune` runs the command-line interface."""

from edgeprune.cli import main

if __name__ == "__main__":
    main()
