#!/bin/sh
# Placeholder demo until the hook lands.
set -eu
echo "imans demo: nothing to show yet"
