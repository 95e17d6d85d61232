"""``python -m functions …``: the operator CLI."""

from functions.cli import main

if __name__ == "__main__":
    main()
