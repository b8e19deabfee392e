#!/usr/bin/env bash
# Debian packages the test-suite's real services need. Idempotent; needs root (CI and dev machines are root).
# tmux: the first-run test watches a job in a terminal (tests/test_first_run.py).
set -euo pipefail
pkgs=(slurm-wlm munge default-jre-headless chromium tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Java already on the machine (any 11+) is enough for ScienceWorld.
if command -v java >/dev/null 2>&1; then
  missing=("${missing[@]/default-jre-headless}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: not root; install these Debian packages yourself: ${missing[*]}" >&2
  exit 0
fi
echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
