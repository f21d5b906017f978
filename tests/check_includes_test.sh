#!/usr/bin/env bash
# The include check has teeth: on a copy of the tree, each planted upward include must make
# scripts/check_includes.sh fail and name the file; the untouched copy must pass.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
plant() { # plant FILE LINE EXPECT: copy the tree, add LINE to FILE, expect a failure naming FILE
    rm -rf "$tmp/t" && mkdir -p "$tmp/t/scripts" && cp -r "$here/src" "$here/tools" "$tmp/t/" && cp "$here/scripts/check_includes.sh" "$tmp/t/scripts/"
    [ -z "$1" ] || printf '%s\n' "$2" >>"$tmp/t/$1"
    out=$(bash "$tmp/t/scripts/check_includes.sh" "$tmp/t" 2>&1)
    rc=$?
    if [ "$3" = pass ]; then
        [ $rc -eq 0 ] || { echo "FAIL: the clean tree should pass: $out"; fails=$((fails + 1)); }
    elif [ $rc -eq 0 ] || ! grep -q "$1" <<<"$out"; then
        echo "FAIL: planting '$2' in $1 was not caught (rc $rc): $out"; fails=$((fails + 1))
    else
        echo "caught: $1 + '$2' -> $(head -1 <<<"$out")"
    fi
}
plant "" "" pass
plant src/kernels/gemm.c '#include "layers/layer.h"' fail        # kernels → layers
plant src/layers/actnorm.c '#include "models/models.h"' fail     # layers → models
plant src/io/plot.c '#include "models/flow_impl.h"' fail         # struct nf_flow outside models
plant src/layers/logit.c '#include <png.h>' fail                 # a data format from layers
plant src/data/csv.c '#include "train/train.h"' fail             # data → train
plant tools/cmd_train.c '#include "models/models.h"' fail            # library internals from the CLI
plant src/train/trainer.c '#include <mpi.h>' fail                # MPI in the library
plant tools/train_loop.c '#include <mpi.h>' fail                 # MPI outside tools/mpi*.c
echo "$((8 - fails)) passed, $fails failed"
[ $fails -eq 0 ]
