#!/usr/bin/env bash
# Installs Debian's SLURM (controller, node daemon, client) and MUNGE for tests/slurm, which start their own
# single-node cluster. Needs root (CI runs as root). Services are NOT started here: the test fixture starts the
# daemons itself and stops them by pid, so package post-install scripts are told not to start them.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)

if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
    echo "SLURM and MUNGE already installed"
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "install_slurm.sh must run as root (apt-get install ${PACKAGES[*]})" >&2
    exit 1
fi

# policy-rc.d exit code 101 = "action forbidden": keeps dpkg from starting munge/slurm services during the install
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    own_policy=1
fi
cleanup() { if [[ "$own_policy" == 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "installed: $(slurmctld -V) / $(munged --version 2>&1 | head -n1)"
