# shellcheck shell=bash
# pip_venv NAME VENV SPEC CHECK: make sure the virtual environment VENV has
# SPEC installed, where CHECK is Python code that succeeds only when it has.
# Nothing is installed when CHECK already passes (the setup scripts are
# idempotent); otherwise the venv is created with $PYTHON (default python3)
# and SPEC installed with pip. NAME prefixes the messages.
pip_venv() {
    local name="$1" venv="$2" spec="$3" check="$4"
    if "$venv/bin/python" -c "$check" 2>/dev/null; then
        return 0
    fi
    echo "$name: installing $spec into $venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"
    "$venv/bin/python" -c "$check" && echo "$name: ok"
}
