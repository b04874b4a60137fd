"""``python -m simulator`` runs the ``capplan`` command line."""

from simulator.cli import main

raise SystemExit(main())
