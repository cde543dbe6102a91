# %post: %systemd_post (presets decide enablement: Fedora/RHEL ship services disabled) + tmpfiles.
if [ $1 -eq 1 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper install-system-units nexus.service || :
    else
        systemctl --no-reload preset nexus.service >/dev/null 2>&1 || :
    fi
fi
systemd-tmpfiles --create nexus.conf >/dev/null 2>&1 || :
exit 0
