#!/usr/bin/env bash
# install-artifact.sh SRC DST: puts a built artifact at DST by writing it beside DST and
# renaming it into place. Overwriting a .so in place kills a Fluent Bit that has it
# loaded (SIGSEGV seen: its mapped pages change under it); a rename leaves the running
# process its old file, and a reader never sees half a file.
set -euo pipefail
tmp="$2.tmp.$$"
cp "$1" "$tmp"
mv -f "$tmp" "$2"
