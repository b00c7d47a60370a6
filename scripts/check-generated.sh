#!/usr/bin/env bash
# check-generated.sh — the committed generated sources match their generators
# (`make check-generated`, part of `make test`):
#   api/openapi_gen.c        from api/openapi.json by api/embed_openapi.sh
#   daemon/migrations_gen.c  from migrations/*.sql by migrations/embed.sh
#   engine/tokenizer/unicode_tables.c  from Python's unicodedata by engine/tokenizer/gen_unicode_tables.py,
#                            checked only when this Python has the Unicode
#                            version the tables were made from (the comment
#                            line naming the Python release is not compared)
# Each is regenerated into a scratch folder, never into the tree. Exits 1,
# naming the command to run, when a file is stale. PYTHON picks the
# interpreter for the Unicode tables (default Debian's /usr/bin/python3, the
# generator's #! line; python3 on PATH when there is none).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
python=${PYTHON:-/usr/bin/python3}
[[ -x $python ]] || python=python3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
stale=0

# same NAME COMMITTED FRESH FIX: complain unless the two files are equal.
same() {
  if ! cmp -s "$2" "$3"; then
    echo "check-generated: $1 is stale: run '$4' and commit it" >&2
    stale=1
  fi
}

api/embed_openapi.sh "$scratch/openapi_gen.c" >/dev/null
same api/openapi_gen.c api/openapi_gen.c "$scratch/openapi_gen.c" "api/embed_openapi.sh"
migrations/embed.sh "$scratch/migrations_gen.c" >/dev/null
same daemon/migrations_gen.c daemon/migrations_gen.c "$scratch/migrations_gen.c" "migrations/embed.sh"

tables=engine/tokenizer/unicode_tables.c
made_from=$(sed -n 's/^const char uni_version\[\] = "\(.*\)";$/\1/p' "$tables")
here=$("$python" -c 'import unicodedata; print(unicodedata.unidata_version)' 2>/dev/null || true)
if [[ -n $here && $here == "$made_from" ]]; then
  "$python" engine/tokenizer/gen_unicode_tables.py >"$scratch/fresh.c"
  grep -v "taken from Python" "$tables" >"$scratch/committed.c"
  grep -v "taken from Python" "$scratch/fresh.c" >"$scratch/unicode_tables.c"
  same "$tables" "$scratch/committed.c" "$scratch/unicode_tables.c" "make regen-unicode"
else
  echo "check-generated: $tables not checked: it holds Unicode $made_from, $python has ${here:-none}" >&2
fi
(( stale == 0 )) && echo "check-generated: generated files are up to date"
exit "$stale"
