"""`python -m wsgistack` is the same as the `wsgistack` command."""

from wsgistack.cli import main

raise SystemExit(main())
