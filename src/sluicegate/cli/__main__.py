"""``python -m sluicegate.cli``: the same as the ``sluicegate`` command."""

from sluicegate.cli import main

if __name__ == "__main__":
    main()
