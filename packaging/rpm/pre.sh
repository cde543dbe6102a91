# %pre: the nexus group must exist before rpm lays down /etc/nexus/nexus.toml (root:nexus).
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --replace=/usr/lib/sysusers.d/nexus.conf - <<'SYSUSERS_EOF' || :
u nexus - "Nexus MCP gateway" /var/lib/nexus /usr/sbin/nologin
SYSUSERS_EOF
else
    getent group nexus >/dev/null || groupadd -r nexus
    getent passwd nexus >/dev/null || \
        useradd -r -g nexus -d /var/lib/nexus -s /usr/sbin/nologin -c "Nexus MCP gateway" nexus
fi
exit 0
