# %preun: %systemd_preun (stop and disable on erase, not on upgrade).
if [ $1 -eq 0 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper remove-system-units nexus.service || :
    else
        systemctl --no-reload disable --now nexus.service >/dev/null 2>&1 || :
    fi
fi
exit 0
