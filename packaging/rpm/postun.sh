# %postun: %systemd_postun_with_restart (restart a running service after an upgrade).
if [ $1 -ge 1 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper mark-restart-system-units nexus.service || :
    else
        systemctl daemon-reload >/dev/null 2>&1 || :
        systemctl try-restart nexus.service >/dev/null 2>&1 || :
    fi
else
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
