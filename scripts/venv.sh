# Sourced: `source scripts/venv.sh DIR CONSTRAINTS` makes (or reuses) the venv DIR, installs the
# project with its dev extra under CONSTRAINTS, and puts DIR/bin first on PATH so that tests
# which start `otp-service`, gunicorn or hadolint get the venv's copies, not the machine's.
venv_dir="$1"
constraints="$2"
if [ ! -x "$venv_dir/bin/python" ]; then
  echo "creating venv $venv_dir"
  python3 -m venv "$venv_dir"
fi
"$venv_dir/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' -c "$constraints" 2>&1 \
  | grep -v "^WARNING: Location 'file:" || true
"$venv_dir/bin/python" -m pip check
export VIRTUAL_ENV="$PWD/$venv_dir"
export PATH="$VIRTUAL_ENV/bin:$PATH"
hash -r
