#!/bin/sh
# Undo tuning/apply.sh: restore every value it saved (the sysctls among them), restart
# the services it stopped, remove its sysctl file.
set -eu
root=${TUNING_ROOT:-}  # as in apply.sh: a made-up tree in the tests, unset on a host
state=$root/var/lib/tradsys-tuning
[ -f "$state/saved" ] || { echo "nothing to revert ($state/saved is missing)"; exit 0; }

# the kernel threads apply.sh moved (RECORD: pid, old CPU list, name) back to their CPUs;
# a pid whose name changed ended and was reused by another process, which is left alone.
# Only a pid's first line counts: a second apply recorded the CPUs the first one set.
restore_kernel_threads() {  # RECORD PROC_DIR
    record=$1 proc=$2
    [ -f "$record" ] || return 0
    seen=" "
    while IFS="$(printf '\t')" read -r pid cpus comm; do
        case "$seen" in *" $pid "*) continue ;; esac
        seen="$seen$pid "
        if [ "$(cat "$proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
            echo "skip kernel thread $pid ($comm): it ended"
        elif why=$(taskset -pc "$cpus" "$pid" 2>&1 >/dev/null); then
            echo "restored kernel thread $pid ($comm) CPUs = $cpus"
        else
            echo "skip kernel thread $pid ($comm): ${why##*: }"
        fi
    done < "$record"
}

# each file's first recorded value: the host's own, before any apply
restored="
"
while IFS="$(printf '\t')" read -r path value; do
    case "$restored" in *"
$path
"*) continue ;; esac
    restored="$restored$path
"
    echo "$value" > "$path" 2>/dev/null && echo "restored $path = $value" || echo "skip $path"
done < "$state/saved"
restore_kernel_threads "$state/affinity" "$root/proc"
if [ -f "$state/services" ]; then
    while read -r service; do systemctl start "$service" && echo "started $service"; done < "$state/services"
fi
# the sysctls were restored above, each from its /proc/sys file's record; no reload: it
# would also re-apply every other file of /etc/sysctl.d over values set since boot
rm -f "$root/etc/sysctl.d/90-tradsys.conf"
rm -rf "$state"
echo "reverted"
