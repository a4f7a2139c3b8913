#!/usr/bin/env bash
# Installs the Debian packages farm's virtual lab and tests use: bubblewrap (the virtual phones'
# sandbox; nsenter, setpriv and unshare come with util-linux), Android's userland for the phones
# (one table, farm/sim/userland.py: mksh as /system/bin/sh, toybox's applets, and busybox-static
# for the applets Debian's toybox lacks, such as tr), adb (Debian's adb 29, tested beside the
# adb 36 in the adbutils wheel), chromium (the browser report.html is tested in) and postgresql
# (the history tests start a private server with initdb/pg_ctl), then checks that bubblewrap can
# start a sandbox here.
#
# What it could not do it says loudly: the tests that need it are then skipped (`make test`
# ends with a line naming them). In strict mode (FARM_STRICT_ENV=1, `make test STRICT=1`,
# .ci/run; also CI=true unless FARM_STRICT_ENV=0) those tests fail, and so does this script.
set -euo pipefail

strict=0
case "${FARM_STRICT_ENV:-}" in
  "") case "${CI:-}" in [Tt]rue | TRUE | 1) strict=1 ;; esac ;;
  0 | [Ff]alse | [Nn]o) ;;
  *) strict=1 ;;
esac

have() {
  local path
  path=$(command -v "$1" 2>/dev/null) && [ -x "$path" ]
}

# PostgreSQL's server programs: on PATH or in Debian's versioned folder.
have_postgres() {
  have initdb && have pg_ctl && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

# The Debian packages still missing, by what the tests look for.
missing_packages() {
  local need=()
  have bwrap || need+=(bubblewrap)
  for tool in nsenter setpriv unshare; do
    if ! have "$tool"; then
      need+=(util-linux)
      break
    fi
  done
  [ -x /usr/bin/adb ] || need+=(adb)  # the tests run Debian's adb from there
  [ -x /usr/bin/chromium ] || need+=(chromium)  # report.html is rendered in it
  # Android's userland (farm/sim/userland.py: HOST_BINARIES -> DEBIAN_PACKAGES)
  have mksh || need+=(mksh)
  have toybox || need+=(toybox)
  have busybox || need+=(busybox-static)
  have_postgres || need+=(postgresql)
  echo "${need[@]}"
}

read -r -a need <<<"$(missing_packages)"
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null; }; then
      echo "setup: apt-get could not install ${need[*]}" >&2
    fi
  else
    echo "setup: not root or no apt-get: cannot install ${need[*]} here" >&2
  fi
fi

problems=()
read -r -a still <<<"$(missing_packages)"
for pkg in "${still[@]}"; do
  case "$pkg" in
    bubblewrap) problems+=("bubblewrap is not installed: the virtual phones run unconfined and the lab tests that need the sandbox do not run") ;;
    util-linux) problems+=("nsenter, setpriv or unshare (util-linux) is missing: no sandbox for the virtual phones, no mount-namespace tests") ;;
    mksh | toybox | busybox-static) problems+=("$pkg is not installed: virtual phones cannot run Android's userland and run unconfined; the lab tests that need the sandbox do not run") ;;
    adb) problems+=("Debian's adb (/usr/bin/adb) is not installed: the tests run only the adb bundled in adbutils") ;;
    chromium) problems+=("chromium (/usr/bin/chromium) is not installed: the HTML report is not checked in a browser") ;;
    postgresql) problems+=("the PostgreSQL server (postgresql) is not installed: the history tests on PostgreSQL do not run") ;;
  esac
done
if have bwrap &&
  ! bwrap --unshare-user --unshare-pid --unshare-net --ro-bind / / --proc /proc --dev /dev true 2>/dev/null; then
  problems+=("bubblewrap cannot start a sandbox on this host (unprivileged user namespaces disabled? see sysctl kernel.unprivileged_userns_clone and user.max_user_namespaces)")
fi

[ ${#problems[@]} -eq 0 ] && exit 0
{
  echo "setup: ================================================================================"
  for problem in "${problems[@]}"; do
    echo "setup: WARNING: $problem."
  done
  echo "setup: install them (e.g. sudo apt-get install bubblewrap adb util-linux chromium mksh toybox busybox-static postgresql) and run again."
  if [ "$strict" -eq 1 ]; then
    echo "setup: strict mode (FARM_STRICT_ENV / CI): the test suite cannot run whole here; stopping."
  else
    echo "setup: the tests that need them will be skipped (FARM_STRICT_ENV=1 makes this an error)."
  fi
  echo "setup: ================================================================================"
} >&2
[ "$strict" -eq 1 ] && exit 1
exit 0
