#!/bin/bash
# Runs inside a booted Debian 12 guest (systemd as PID 1, private network): the installed
# package's whole life. Called by packaging/ci/nspawn-smoke:
#
#   lifecycle.sh deb|rpm PACKAGE_FILE
#
# Prints `ok`/`FAIL`/`skip` per check and a last line `guest: N passed, M failed`.
set -uo pipefail
format=$1 package=$2
here=$(dirname "$(readlink -f "$0")")
lib=/usr/local/lib/nexus-test           # outside /root: the unit has ProtectHome=yes
url=http://127.0.0.1:8000/mcp
passed=0 failed=0

ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { echo "skip $*"; }
# check DESCRIPTION COMMAND...: passes when COMMAND exits 0; shows its output when not.
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$name"; else fail "$name"; printf '%s\n' "$out" | tail -20 | sed 's/^/     /'; fi
}
# wait_for SECONDS COMMAND...: retries COMMAND every 0.2 s.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.2; done
}
prop() { systemctl show -p "$1" --value nexus.service; }
mcp() { python3 "$lib/mcp_call.py" "$url" "$@"; }
finish() { echo "guest: $passed passed, $failed failed"; exit $((failed > 0)); }

mkdir -p "$lib" && cp "$here"/*.py "$here"/*.js "$lib"/

# === install ===
case $format in
  deb) check "dpkg -i succeeds" dpkg -i --force-confdef --force-confold "$package" ;;
  rpm) check "rpm -i succeeds" rpm -i --nodeps --dbpath /var/lib/rpm "$package" ;;
esac
[ -x /usr/bin/nexus ] || { fail "nexus installed"; finish; }
check "fresh install leaves no failed unit" bash -c '! systemctl is-failed --quiet nexus.service'
check "fresh install does not start the service" bash -c '[ "$(systemctl is-active nexus.service)" = inactive ]'
check "user nexus is a system user with home /var/lib/nexus" \
  bash -c 'u=$(getent passwd nexus) && [ "$(echo "$u" | cut -d: -f3)" -lt 1000 ] && [ "$(echo "$u" | cut -d: -f6)" = /var/lib/nexus ]'
mode() { [ "$(stat -c '%a %U:%G' "$1")" = "$2" ] || { stat -c '%n %a %U:%G' "$1"; return 1; }; }
check "/etc/nexus 0750 root:nexus" mode /etc/nexus "750 root:nexus"
check "/etc/nexus/certs 0750 root:nexus" mode /etc/nexus/certs "750 root:nexus"
check "/etc/nexus/credentials 0700 root:root" mode /etc/nexus/credentials "700 root:root"
check "/etc/nexus/nexus.toml 0640 root:nexus" mode /etc/nexus/nexus.toml "640 root:nexus"
check "/var/lib/nexus 0750 nexus:nexus" mode /var/lib/nexus "750 nexus:nexus"
check "SoftHSM store /var/lib/nexus/softhsm/tokens 0700 nexus:nexus" mode /var/lib/nexus/softhsm/tokens "700 nexus:nexus"
check "the shipped configuration is valid" nexus check --config /etc/nexus/nexus.toml
check "man page installed" test -s /usr/share/man/man8/nexus.8.gz
# --man=no: the minimal guest has no man-db to resolve Documentation=man:nexus(8).
check "systemd-analyze verify nexus.service" systemd-analyze verify --man=no nexus.service
score=$(systemd-analyze security nexus.service 2>/dev/null | grep -o 'nexus.service: [0-9.]*' | cut -d' ' -f2)
check "systemd-analyze security --threshold=15 (running systemd: $score)" systemd-analyze security --threshold=15 nexus.service

# === PKCS#11 under the unit's sandbox (SoftHSM store of the nexus user) ===
hsm() { runuser -u nexus -- env SOFTHSM2_CONF=/var/lib/nexus/softhsm/softhsm2.conf "$@"; }
module=/usr/lib/softhsm/libsofthsm2.so
check "SoftHSM token initialised by user nexus" \
  hsm softhsm2-util --init-token --free --label nexus --so-pin 12345678 --pin 1234
check "EC P-256 key generated on the token" \
  hsm pkcs11-tool --module $module --token-label nexus --login --pin 1234 --keypairgen \
  --key-type EC:prime256v1 --id 01 --label client-key --usage-sign
printf '%032d' 7 >"$lib/data"     # CKM_ECDSA signs a digest-sized input
# The same sandbox as nexus.service, running pkcs11-tool instead of nexus.
sed -e '/^ExecStartPre=/d' -e '/^ExecReload=/d' -e '/^WatchdogSec=/d' -e '/^NotifyAccess=/d' \
  -e 's/^Type=notify/Type=oneshot/' -e '/^Restart=/d' \
  -e "s|^ExecStart=.*|ExecStart=/usr/bin/pkcs11-tool --module $module --token-label nexus --login --pin 1234 --sign --id 01 --mechanism ECDSA --input-file $lib/data --output-file /var/lib/nexus/probe.sig|" \
  /usr/lib/systemd/system/nexus.service >/etc/systemd/system/hsm-probe.service
systemctl daemon-reload
check "the PKCS#11 module loads and the token key signs under the unit's sandbox" \
  bash -c 'systemctl start hsm-probe.service && [ -s /var/lib/nexus/probe.sig ] || { journalctl -u hsm-probe.service --no-pager -o cat; false; }'

# === configure: two stdio downstreams (python, node) and a credential ===
printf 'demo-secret-value\n' >/etc/nexus/credentials/demo-token
chmod 600 /etc/nexus/credentials/demo-token
printf '1234\n' >/etc/nexus/credentials/hsm-pin
chmod 600 /etc/nexus/credentials/hsm-pin
mkdir -p /etc/systemd/system/nexus.service.d
cat >/etc/systemd/system/nexus.service.d/credentials.conf <<'UNIT'
[Service]
LoadCredential=demo-token:/etc/nexus/credentials/demo-token
LoadCredential=hsm-pin:/etc/nexus/credentials/hsm-pin
UNIT
write_config() {
  cat >/etc/nexus/nexus.toml <<TOML
[server]
listen_address = "127.0.0.1:8000"
[mcp]
tools = "direct"
[mcp.servers.py]
cmd = ["/usr/bin/python3", "$lib/echo_server.py"]
env = { DEMO_SECRET = "{{ credential.demo-token }}" }
[mcp.servers.node]
cmd = ["/usr/bin/node", "$lib/echo_server.js"]
TOML
  cat "$@" >>/etc/nexus/nexus.toml 2>/dev/null || true
}
write_config
systemctl daemon-reload
check "systemctl enable --now nexus" systemctl enable --now nexus.service
check "active (Type=notify: READY=1 received)" bash -c '[ "$(systemctl is-active nexus.service)" = active ]'
check "STATUS= shows 2/2 downstreams connected" \
  wait_for 20 bash -c '[ "$(systemctl show -p StatusText --value nexus.service)" = "2/2 downstreams connected" ]'
pid=$(prop MainPID)
check "runs as nexus with no capabilities, no_new_privs and seccomp" \
  bash -c "grep -q '^Uid:.*$(id -u nexus)' /proc/$pid/status && grep -q '^CapEff:.*0000000000000000' /proc/$pid/status && grep -q '^NoNewPrivs:.*1' /proc/$pid/status && grep -q '^Seccomp:.*2' /proc/$pid/status"
check "journal priorities: \"listening\" is info, not warning" \
  bash -c "journalctl -u nexus.service -p info --no-pager -o cat | grep -q listening && ! journalctl -u nexus.service -p warning --no-pager -o cat | grep -q listening"
session=$(mcp open)
check "MCP session opened through the gateway" test -n "$session"
check "tools/call to the python stdio downstream (credential delivered)" \
  bash -c "out=\$(python3 $lib/mcp_call.py $url $session tools/call '{\"name\":\"py__whoami\",\"arguments\":{}}') && grep -q 'user=nexus secret_len=17' <<<\"\$out\" || { echo \"\$out\"; false; }"
check "tools/call to the node stdio downstream (JIT under the sandbox)" \
  bash -c "out=\$(python3 $lib/mcp_call.py $url $session tools/call '{\"name\":\"node__whoami\",\"arguments\":{}}') && grep -q 'node user=nexus jit=' <<<\"\$out\" || { echo \"\$out\"; false; }"

# Why the unit leaves MemoryDenyWriteExecute= off: V8's JIT needs writable+executable memory.
check "node (JIT) fails under MemoryDenyWriteExecute=yes: the unit leaves it off" \
  bash -c '! systemd-run --quiet --wait --pipe -p User=nexus -p MemoryDenyWriteExecute=yes /usr/bin/node "$0"/echo_server.js </dev/null >/dev/null 2>&1' "$lib"

# === HTTPS downstream keyed by SoftHSM (needs the PKCS#11 provider in this build) ===
https=no
if nexus pkcs11 list --help >/dev/null 2>&1; then
  https=yes
  certs=/etc/nexus/certs
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$lib/ca.key" \
    -out "$certs/ca.pem" -subj /CN=smoke-ca -days 2 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$lib/server.key" \
    -out "$lib/server.pem" -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -CA "$certs/ca.pem" -CAkey "$lib/ca.key" -days 2 2>/dev/null
  hsm pkcs11-tool --module $module --token-label nexus --read-object --type pubkey --id 01 \
    -o /var/lib/nexus/pub.der >/dev/null 2>&1
  openssl pkey -pubin -inform DER -in /var/lib/nexus/pub.der -out "$lib/pub.pem"
  issue_client() {  # issue_client SERIAL: a client certificate for the token key
    openssl x509 -new -force_pubkey "$lib/pub.pem" -subj /CN=nexus-client -set_serial "$1" \
      -CA "$certs/ca.pem" -CAkey "$lib/ca.key" -days 1 -out "$certs/client.pem.new" 2>/dev/null &&
      chgrp nexus "$certs/client.pem.new" && chmod 640 "$certs/client.pem.new" &&
      mv "$certs/client.pem.new" "$certs/client.pem"
  }
  issue_client 4097   # 0x1001
  chgrp nexus "$certs/ca.pem"; chmod 640 "$certs/ca.pem"
  systemd-run --quiet --unit=smoke-https python3 "$lib/https_server.py" 8443 "$lib/server.pem" \
    "$lib/server.key" "$certs/ca.pem" "$lib/serials.log"
  cat >"$lib/secure.toml" <<TOML
[pkcs11]
module_path = "$module"
pin_file = "hsm-pin"
[mcp.servers.secure]
url = "https://127.0.0.1:8443/mcp"
[mcp.servers.secure.tls]
root_ca_cert_path = "$certs/ca.pem"
client_cert_path = "$certs/client.pem"
client_key_path = "pkcs11:token=nexus;object=client-key;type=private"
TOML
  write_config "$lib/secure.toml"
  check "restart with the HTTPS downstream (token key via LoadCredential PIN)" systemctl restart nexus.service
  check "STATUS= shows 3/3 downstreams connected" \
    wait_for 20 bash -c '[ "$(systemctl show -p StatusText --value nexus.service)" = "3/3 downstreams connected" ]'
  pid=$(prop MainPID)
  session=$(mcp open)
  check "tools/call to the HTTPS downstream signs with the token key" \
    bash -c "python3 $lib/mcp_call.py $url $session tools/call '{\"name\":\"secure__tls_whoami\",\"arguments\":{}}' | grep -q 'serial=1001'"
else
  skip "HTTPS downstream keyed by SoftHSM: this nexus has no \`pkcs11\` command yet"
fi

# === reload ===
if [ $https = yes ]; then
  issue_client 8194   # 0x2002: rotate the client certificate
fi
check "systemctl reload succeeds" bash -c 'systemctl reload nexus.service || { journalctl -u nexus.service --no-pager -o cat | tail -5; false; }'
check "reload keeps the MainPID" bash -c "[ \"\$(systemctl show -p MainPID --value nexus.service)\" = $pid ]"
want_status="2/2 downstreams connected"; [ $https = yes ] && want_status="3/3 downstreams connected"
check "STATUS= shows $want_status again after the reload" \
  wait_for 10 bash -c "[ \"\$(systemctl show -p StatusText --value nexus.service)\" = '$want_status' ]"
check "a session opened before the reload still works" \
  bash -c "python3 $lib/mcp_call.py $url $session tools/call '{\"name\":\"py__echo\",\"arguments\":{\"text\":\"after-reload\"}}' | grep -q after-reload"
if [ $https = yes ]; then
  check "the rotated client certificate is in use after reload" \
    bash -c "python3 $lib/mcp_call.py $url $session tools/call '{\"name\":\"secure__tls_whoami\",\"arguments\":{}}' | grep -q 'serial=2002'"
fi
cp /etc/nexus/nexus.toml "$lib/good.toml"
sed -i '1i listen_adress = "127.0.0.1:9"' /etc/nexus/nexus.toml
check "reload with a broken configuration fails" bash -c '! systemctl reload nexus.service'
check "the journal says why the reload failed" bash -c "journalctl -u nexus.service --no-pager -o cat | grep -q 'unknown key .listen_adress'"
check "the broken reload left the service active with the same MainPID" \
  bash -c "[ \"\$(systemctl is-active nexus.service)\" = active ] && [ \"\$(systemctl show -p MainPID --value nexus.service)\" = $pid ]"
check "the old configuration still serves" \
  bash -c "python3 $lib/mcp_call.py $url $session tools/call '{\"name\":\"node__echo\",\"arguments\":{\"text\":\"still-here\"}}' | grep -q still-here"
cp "$lib/good.toml" /etc/nexus/nexus.toml

# === watchdog ===
cat >/etc/systemd/system/nexus.service.d/watchdog.conf <<'UNIT'
[Service]
WatchdogSec=2s
TimeoutAbortSec=2s
UNIT
systemctl daemon-reload
systemctl restart nexus.service
frozen=$(prop MainPID)
check "watchdog pings keep a healthy daemon alive for 4 s" \
  bash -c "sleep 4; [ \"\$(systemctl show -p MainPID --value nexus.service)\" = $frozen ]"
kill -STOP "$frozen"
check "a frozen daemon is killed by the watchdog and restarted" \
  wait_for 20 bash -c "p=\$(systemctl show -p MainPID --value nexus.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $frozen ] && [ \"\$(systemctl is-active nexus.service)\" = active ]"
check "the journal records the watchdog timeout" bash -c "journalctl -u nexus.service --no-pager | grep -qi 'watchdog timeout'"
rm /etc/systemd/system/nexus.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart nexus.service

# === stop ===
wait_for 20 bash -c '[ "$(systemctl show -p StatusText --value nexus.service)" = "2/2 downstreams connected" ] || [ "$(systemctl show -p StatusText --value nexus.service)" = "3/3 downstreams connected" ]'
start=$SECONDS
check "systemctl stop" systemctl stop nexus.service
check "stop took under 10 s and left no process of user nexus" \
  bash -c "[ $((SECONDS - start)) -lt 10 ] && ! pgrep -u nexus"
check "stopped cleanly (not failed)" bash -c '[ "$(systemctl is-active nexus.service)" = inactive ]'
systemctl start nexus.service

# === remove, purge ===
case $format in
  deb)
    check "dpkg -r stops the service" bash -c 'dpkg -r nexus >/dev/null && [ "$(systemctl is-active nexus.service)" != active ] && [ ! -e /usr/bin/nexus ]'
    check "remove keeps the configuration and the user" bash -c 'test -f /etc/nexus/nexus.toml && getent passwd nexus >/dev/null'
    check "dpkg -P removes the configuration, credentials and state" bash -c 'dpkg -P nexus >/dev/null 2>&1 && [ ! -e /etc/nexus/nexus.toml ] && [ ! -e /etc/nexus/credentials ] && [ ! -e /var/lib/nexus ]'
    if [ $https = yes ]; then
      # Certificates the operator put in /etc/nexus/certs are theirs: purge leaves them.
      check "dpkg -P keeps operator certificates in /etc/nexus/certs" test -f /etc/nexus/certs/client.pem
    else
      check "dpkg -P removes /etc/nexus" test ! -e /etc/nexus
    fi
    ;;
  rpm)
    check "rpm -e stops and disables the service" bash -c 'rpm -e --nodeps --dbpath /var/lib/rpm nexus && [ "$(systemctl is-active nexus.service)" != active ] && [ ! -e /usr/bin/nexus ]'
    check "the edited configuration is kept as nexus.toml.rpmsave" test -f /etc/nexus/nexus.toml.rpmsave
    ;;
esac
finish
