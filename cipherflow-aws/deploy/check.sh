#!/usr/bin/env bash
# Lint and policy checks for the CipherFlow CloudFormation template.
#   1. cfn-lint   (schema, intrinsic functions, best practices)
#   2. checkov    (security misconfigurations; any failed check fails the run)
#   3. pytest     test_separation.py (separation of duties proved from the template)
# Exits non-zero on any finding. Run from anywhere: bash cipherflow-aws/deploy/check.sh
set -euo pipefail

CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
PYTEST_VERSION=8.3.4

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

template=cipherflow-aws/deploy/cipherflow.yaml
venv="$root/.venv-infra"
py="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "== creating $venv"
  "$py" -m venv "$venv"
fi
want="cfn-lint==$CFN_LINT_VERSION checkov==$CHECKOV_VERSION pytest==$PYTEST_VERSION"
stamp="$venv/.cipherflow-infra-pins"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "== installing $want"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
  echo "$want" >"$stamp"
fi

export PATH="$venv/bin:$PATH"
status=0

echo "== cfn-lint $(cfn-lint --version 2>&1 | tail -n1)"
if cfn-lint --include-checks I -- "$template"; then echo "cfn-lint: clean"; else echo "cfn-lint: FINDINGS"; status=1; fi

echo "== checkov $(checkov --version 2>&1 | tail -n1)"
# --quiet prints failed checks only; the exit code is non-zero on any failed check.
# --skip-download: CI has no network but the package registries; checkov would otherwise try to
# fetch guideline links from its vendor (a traceback in the log, no effect on the checks).
if checkov -f "$template" --framework cloudformation --compact --quiet --skip-download; then
  echo "checkov: clean"
else
  echo "checkov: FINDINGS"; status=1
fi

echo "== separation-of-duties test"
if python -m pytest -q -p no:cacheprovider cipherflow-aws/deploy/test_separation.py; then :; else status=1; fi

if [[ $status -ne 0 ]]; then echo "infra checks: FAILED"; else echo "infra checks: OK"; fi
exit $status
