"""``python -m depot``: the ``depot`` command."""
from depot.cli import run

if __name__ == "__main__":
    run()
