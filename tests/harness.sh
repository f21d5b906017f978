# harness.sh — the shared start of the command-line test scripts, sourced as their first command:
#     . "$(dirname "$0")/harness.sh" NAME "$@"
# sets NFLOW from the script's first argument (usage message if missing), a scratch folder $T removed on
# exit, the counters pass / fail with ok and bad MESSAGE (printed as FAIL: MESSAGE), and finish, the
# last command: prints "NAME: P passed, F failed" and returns non-zero if any check failed.
set -u
harness_name=$1
NFLOW=${2:?usage: ${harness_name}_test.sh path/to/nflow}
T=$(mktemp -d "/tmp/nflow-$harness_name-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() {
    echo "$harness_name: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
