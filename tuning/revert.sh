#!/bin/sh
# Undo tuning/apply.sh: restore every value it saved, restart the services it stopped,
# remove its sysctl file.
set -eu
state=/var/lib/tradsys-tuning
[ -f "$state/saved" ] || { echo "nothing to revert ($state/saved is missing)"; exit 0; }
while IFS="$(printf '\t')" read -r path value; do
    echo "$value" > "$path" 2>/dev/null && echo "restored $path = $value" || echo "skip $path"
done < "$state/saved"
if [ -f "$state/services" ]; then
    while read -r service; do systemctl start "$service" && echo "started $service"; done < "$state/services"
fi
rm -f /etc/sysctl.d/90-tradsys.conf && sysctl -q --system || true
rm -rf "$state"
echo "reverted"
