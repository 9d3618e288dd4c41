#!/usr/bin/env bash
# The stand-in board that the device=remote tests log in to (tests/helpers/ssh_board.py starts a throwaway OpenSSH
# server on 127.0.0.1 for each test session): OpenSSH's server, a user with no rights outside its home, and the board's
# interpreters: the system Python 3 with numpy and onnxruntime (as a board has them), with numpy alone (the "no
# runtime" fault), and with a stand-in trtexec on its PATH (tests/helpers/fake_trtexec.py: TensorRT's command-line
# tool as edgecomp calls it, run by ONNX Runtime). Needs root (a user and a system package); .ci/run runs it. Without
# it, the tests that need the board are skipped, saying so; with EDGECOMP_REQUIRE_BOARD=1 (CI) they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository: tests/helpers/fake_trtexec.py
BOARD=/opt/edgecomp-test-board
LOGIN=edgecomp-board
if [ "$(id -u)" != 0 ]; then
  echo "scripts/install_test_board.sh needs root (it adds the user $LOGIN and the package openssh-server)" >&2
  exit 1
fi
if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/python3 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server python3 > /dev/null
fi
mkdir -p /run/sshd  # sshd's privilege separation folder
id -u "$LOGIN" > /dev/null 2>&1 || useradd --create-home --shell /bin/sh --user-group "$LOGIN"
usermod -p '*' "$LOGIN"  # no password, but not locked: sshd without PAM refuses a locked account even with a key
chmod 700 "/home/$LOGIN"
# The board's packages, for the system Python's version (its own wheels: not this environment's site-packages), at the
# versions this environment has (requirements.txt), so that the board computes what the host does
version=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
numpy_pin=$(python -c 'import numpy; print("numpy==" + numpy.__version__)')
ort_pin=$(python -c 'import onnxruntime; print("onnxruntime==" + onnxruntime.__version__)')
for set in full numpy; do
  packages="$numpy_pin $ort_pin"; [ "$set" = numpy ] && packages="$numpy_pin"
  if [ ! -f "$BOARD/site-$set/.complete" ]; then
    rm -rf "$BOARD/site-$set"
    # shellcheck disable=SC2086
    pip install --quiet --disable-pip-version-check --only-binary=:all: --python-version "$version" \
      --target "$BOARD/site-$set" $packages
    touch "$BOARD/site-$set/.complete"
  fi
done
mkdir -p "$BOARD/bin" "$BOARD/trtexec-bin"
cat > "$BOARD/bin/python" <<EOS
#!/bin/sh
PYTHONPATH=$BOARD/site-full exec /usr/bin/python3 "\$@"
EOS
cat > "$BOARD/bin/python-without-onnxruntime" <<EOS
#!/bin/sh
PYTHONPATH=$BOARD/site-numpy exec /usr/bin/python3 "\$@"
EOS
cat > "$BOARD/bin/python-with-trtexec" <<EOS
#!/bin/sh
PATH=$BOARD/trtexec-bin:\$PATH PYTHONPATH=$BOARD/site-full exec /usr/bin/python3 "\$@"
EOS
{ echo "#!$BOARD/bin/python"; tail -n +2 tests/helpers/fake_trtexec.py; } > "$BOARD/trtexec-bin/trtexec"
chmod 755 "$BOARD/bin/"* "$BOARD/trtexec-bin/trtexec"
chmod -R a+rX "$BOARD"
echo "test board ready: $BOARD (login $LOGIN)"
