#!/bin/sh
# One-time: create the hub's namespace in 0-db (run after zdb.service started).
#   ZDB_ADMIN=... NS_PASSWORD=... sh zdb-setup.sh
set -eu
cli() { redis-cli -p 9901 "$@"; }
cli AUTH "$ZDB_ADMIN" >/dev/null
cli NSNEW hub
cli NSSET hub password "$NS_PASSWORD"
cli NSSET hub public 1     # readable without the password (tools on this machine), writable with it
