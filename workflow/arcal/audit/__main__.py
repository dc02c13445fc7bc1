"""``python -m arcal.audit``: see :mod:`arcal.audit.cli`."""

from arcal.audit.cli import main

if __name__ == "__main__":
    main()
