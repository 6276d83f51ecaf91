"""``python -m jaxnet`` is the ``jaxnet`` command."""

from .cli import main

raise SystemExit(main())
