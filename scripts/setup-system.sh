#!/usr/bin/env bash
# Installs the Debian packages farm's virtual lab and tests use: bubblewrap (sandboxing the
# virtual phones' shells) and adb (Debian's adb, tested beside the one in the adbutils wheel).
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v adb >/dev/null 2>&1 || [ -x /usr/lib/android-sdk/platform-tools/adb ] || need+=(adb)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "setup: missing ${need[*]}; install them (e.g. sudo apt-get install ${need[*]})." >&2
  echo "setup: without bubblewrap the virtual phones fall back to a weaker confinement;" >&2
  echo "setup: without Debian's adb the tests use only the adb bundled in adbutils." >&2
fi
