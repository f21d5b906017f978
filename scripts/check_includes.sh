#!/usr/bin/env bash
# check_includes.sh [ROOT] — the layering of the library, checked from its #include lines.
#
# Every library file lives in a folder of src/ that is one layer of the design; a file may include the
# public header "nflow.h" and headers from the folders its layer lists below, nothing else:
#   core    → core                          kernels → core kernels
#   nets    → core kernels nets             layers  → core kernels nets layers
#   models  → core layers models            data    → core data
#   io      → core data models io           train   → core data io models train
# Also: models/flow_impl.h (struct nf_flow) only from src/models; file-format libraries (png.h, jpeglib.h,
# zlib.h, cjson) only in data and io; BLAS and intrinsics (cblas.h, immintrin.h) only in kernels; the
# command-line tool (tools/) only through the public header and its own files; MPI (mpi.h) only in the
# command-line tool's tools/mpi*.c (the library stays MPI-free: it is lent the sums as an nf_reducer).
# Prints one line per violation and exits 1 if there is any; exits 0 when the tree keeps the rules.
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
fail=0
bad() { echo "check_includes: $1:$2: $3"; fail=1; }

allowed_for() {
    case $1 in
    core) echo "core" ;;
    kernels) echo "core kernels" ;;
    nets) echo "core kernels nets" ;;
    layers) echo "core kernels nets layers" ;;
    models) echo "core layers models" ;;
    data) echo "core data" ;;
    io) echo "core data models io" ;;
    train) echo "core data io models train" ;;
    *) echo "" ;;
    esac
}

shopt -s nullglob
for f in src/*/*.c src/*/*.h; do
    mod=$(basename "$(dirname "$f")")
    allowed=$(allowed_for "$mod")
    [ -n "$allowed" ] || { bad "$f" 0 "folder src/$mod is not a layer of the design (add it to this script)"; continue; }
    while IFS=: read -r line text; do
        inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]*)[>"].*/\1\2/' <<<"$text")
        kind=${inc:0:1} path=${inc:1}
        if [ "$kind" = '"' ]; then
            [ "$path" = nflow.h ] && continue
            top=${path%%/*}
            if [ "$top" = "$path" ]; then bad "$f" "$line" "\"$path\": include headers by folder (\"$mod/$path\")"; continue; fi
            case " $allowed " in
            *" $top "*) ;;
            *) bad "$f" "$line" "src/$mod may not include \"$path\" (allowed: $allowed)"; continue ;;
            esac
            if [ "$path" = models/flow_impl.h ] && [ "$mod" != models ]; then bad "$f" "$line" "struct nf_flow (models/flow_impl.h) is private to src/models"; fi
        else
            case $path in
            png.h | jpeglib.h | zlib.h | cjson/*) case $mod in data | io) ;; *) bad "$f" "$line" "<$path>: file formats belong in src/data or src/io" ;; esac ;;
            cblas.h | immintrin.h | *intrin.h) [ "$mod" = kernels ] || bad "$f" "$line" "<$path>: BLAS and intrinsics belong in src/kernels" ;;
            mpi.h | mpi/*) bad "$f" "$line" "<$path>: the library stays MPI-free (MPI belongs in tools/mpi.c, behind nf_reducer)" ;;
            esac
        fi
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include' "$f")
done
for f in tools/*.c tools/*.h; do
    while IFS=: read -r line text; do
        path=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)".*/\1/' <<<"$text")
        [ "$path" = nflow.h ] && continue
        case $path in */*) bad "$f" "$line" "the CLI uses the public header only, not \"$path\"" ;; *) [ -f "tools/$path" ] || bad "$f" "$line" "\"$path\" is not a file of tools/" ;; esac
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
    case $f in tools/mpi*.c) ;; *)
        while IFS=: read -r line text; do bad "$f" "$line" "<mpi.h>: MPI belongs in tools/mpi*.c only"; done \
            < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*<mpi(\.h|/)' "$f") ;;
    esac
done
[ $fail -eq 0 ] && echo "check_includes: the include rules hold ($(ls src/*/*.[ch] | wc -l) library files, $(ls tools/*.[ch] | wc -l) tool files)"
exit $fail
