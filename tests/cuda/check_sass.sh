#!/usr/bin/env bash
# Checks that the tensor-core kernels of an object hold tensor-core instructions in their SASS:
# HMMA for every architecture asked (sm_90 may also use HGMMA). Simple-kernel counts are shown.
# usage: check_sass.sh CUOBJDUMP OBJECT ARCH...     (ARCH: 80, 90, ...)
set -euo pipefail
cuobjdump=$1 object=$2
shift 2
# cuobjdump -sass needs nvdisasm: look next to cuobjdump first.
export PATH="$(dirname "$cuobjdump"):$PATH"
sass=$("$cuobjdump" -sass "$object")
status=0
for arch in "$@"; do
  report=$(printf '%s\n' "$sass" | awk -v want="sm_$arch" '
    /arch = sm_/ { arch = $3 }
    /Function :/ { fn = $3; if (arch == want) { seen[fn] = 1; n[fn] += 0 } }
    arch == want && /HMMA|HGMMA/ { n[fn]++ }
    END { for (f in seen) printf "%d %s\n", n[f], f }' | sort -k2)
  if [ -z "$report" ]; then
    echo "sm_$arch: no SASS for this architecture in $object"
    status=1
    continue
  fi
  mma=$(printf '%s\n' "$report" | grep -c 'mma_kernel' || true)
  missing=$(printf '%s\n' "$report" | awk '$2 ~ /mma_kernel/ && $1 == 0' | wc -l)
  echo "sm_$arch: $mma tensor-core kernels, tensor-core instructions per kernel:"
  printf '%s\n' "$report" | awk '{ printf "  %5d  %s\n", $1, $2 }'
  if [ "$mma" -eq 0 ] || [ "$missing" -ne 0 ]; then
    echo "sm_$arch: FAILED: a tensor-core kernel without HMMA/HGMMA (or none at all)"
    status=1
  fi
done
exit $status
