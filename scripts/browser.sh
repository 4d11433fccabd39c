#!/usr/bin/env bash
# The browser the dashboard test drives: Debian's Chromium and its
# ChromeDriver (packages chromium and chromium-driver).
#
#   scripts/browser.sh install   # install both once (apt-get; sudo when not root)
#   scripts/browser.sh path      # print chromedriver's path, or fail
#
# The dashboard test (crates/conveyor-cli/tests/dashboard.rs) runs `install`
# itself when chromedriver is missing, so `cargo test --workspace` needs no
# step before it. A lock keeps two installs from running at once.
set -euo pipefail

driver() {
  if [[ -n "${CONVEYOR_CHROMEDRIVER:-}" ]]; then
    echo "$CONVEYOR_CHROMEDRIVER"
  else
    command -v chromedriver || true
  fi
}

case "${1:-}" in
  install)
    exec 9>"${TMPDIR:-/tmp}/conveyor-browser-install.lock"
    flock 9
    if [[ -n "$(driver)" ]] && command -v chromium >/dev/null; then
      echo "chromium and chromedriver are installed: $(driver)"
      exit 0
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { echo "installing chromium needs root (or sudo)" >&2; exit 1; }
      sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    echo "installed: $(chromium --version 2>/dev/null | head -1); $(driver)"
    ;;
  path)
    d=$(driver)
    [[ -n "$d" ]] || { echo "chromedriver is not installed: scripts/browser.sh install" >&2; exit 1; }
    echo "$d"
    ;;
  *)
    echo "usage: $0 install|path" >&2
    exit 2
    ;;
esac
