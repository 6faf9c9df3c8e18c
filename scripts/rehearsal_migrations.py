#!/usr/bin/env python3
"""Migration facts of one release, for the deployment rehearsal.

Run from a release's directory with that release's virtualenv and environment:

    rehearsal_migrations.py leaves   # "app migration" per app: the newest migration on disk
    rehearsal_migrations.py check    # exit 1 unless the database holds exactly this release's migrations

``check`` reports the release's migrations that the database lacks, and the migrations
recorded in the database that the release does not know (left behind by a newer
release that was not migrated back).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in {"leaves", "check"}:
        print(__doc__, file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    if argv[1] == "leaves":
        loader = MigrationLoader(None, ignore_no_migrations=True)
        for app, name in sorted(loader.graph.leaf_nodes()):
            print(app, name)
        return 0

    loader = MigrationLoader(connection)
    known = set(loader.graph.nodes)
    applied = set(loader.applied_migrations)
    missing, unknown = sorted(known - applied), sorted(applied - known)
    for app, name in missing:
        print(f"not applied: {app}.{name}")
    for app, name in unknown:
        print(f"applied but unknown to this release: {app}.{name}")
    if missing or unknown:
        return 1
    print(f"the database holds exactly this release's {len(known)} migrations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
