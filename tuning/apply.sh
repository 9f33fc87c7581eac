#!/bin/sh
# Apply the run-time host tuning for TradSys (the kernel command line needs a reboot;
# see kernel-cmdline.example). Opt-in, needs root, and records what it changes in
# /var/lib/tradsys-tuning/saved so that revert.sh puts it back. Needs python3 and taskset
# (util-linux); both are checked before anything changes.
#   sudo tuning/apply.sh HOUSEKEEPING_CPUS      e.g. sudo tuning/apply.sh 0-1
#   tuning/apply.sh --dry-run 0-1               what it would change; changes nothing,
#                                               records nothing, needs no root
set -eu
usage="usage: apply.sh [--dry-run] HOUSEKEEPING_CPUS   (e.g. sudo tuning/apply.sh 0-1)"
dry_run=0
if [ "${1:-}" = --dry-run ]; then dry_run=1; shift; fi
[ $# -eq 1 ] || { echo "$usage" >&2; exit 1; }
housekeeping=$1
here=$(cd "$(dirname "$0")" && pwd)
# TUNING_ROOT: where /sys, /proc, /etc and /var/lib are; the tests point it at a made-up
# tree. It moves the files only: taskset and systemctl still act on this host, so the
# tests put stand-ins for them first (and alone) on PATH. Unset on a real host.
root=${TUNING_ROOT:-}
state=$root/var/lib/tradsys-tuning
# Appended to, never emptied: a second apply records the values the first one set, and
# revert.sh restores the first value recorded for each file (the host's own).
saved="$state/saved"

# sh has no local variables: the helpers' names are their own (save_*, set_*), so that one
# helper calling another cannot overwrite the caller's.
save() {  # remember a file's current value, before changing it
    save_path=$1
    [ -w "$save_path" ] || return 0
    save_old=$(cat "$save_path")
    # choice files ("always [madvise] never") are written back as the chosen word
    case "$save_old" in *\[*) save_old=$(echo "$save_old" | sed 's/.*\[\(.*\)\].*/\1/') ;; esac
    printf '%s\t%s\n' "$save_path" "$save_old" >> "$saved"
}

cpu_list() {  # a CPU list ("0-1,4") as words ("0 1 4") or as a hex mask ("13")
    python3 -c 'import sys
cpus = set()
for part in sys.argv[2].split(","):
    lo, _, hi = part.partition("-")
    cpus.update(range(int(lo), int(hi or lo) + 1))
if sys.argv[1] == "mask":
    print(format(sum(1 << c for c in cpus), "x"))
else:
    print(" ".join(map(str, sorted(cpus))))' "$1" "$2"
}

# Unbound kernel threads (kdamond, rcu_preempt, kcompactd, kswapd...) go to the
# housekeeping CPUs too: a kernel without preemption (PREEMPT_NONE) lets one that is busy
# in the kernel run on until it sleeps, and an engine thread woken behind it on its CPU
# waits (kdamond.0 ran 1.59 ms on a shard worker's CPU; tuning/README.md). kthreadd first,
# so that kernel threads started later get its CPUs. Per-CPU threads (kworkers,
# ksoftirqd, migration) have PF_NO_SETAFFINITY and stay. Each moved thread's pid, old CPU
# list and name go to RECORD, for revert.sh.
move_kernel_threads() {  # HOUSEKEEPING_CPUS PROC_DIR RECORD
    move_kernel_thread "$1" "$2" "$3" 2  # kthreadd
    for stat in "$2"/[0-9]*/stat; do
        pid=${stat%/stat}; pid=${pid##*/}
        [ "$pid" = 2 ] || move_kernel_thread "$1" "$2" "$3" "$pid"
    done
}

move_kernel_thread() {  # HOUSEKEEPING_CPUS PROC_DIR RECORD PID
    cpus=$1 proc=$2 record=$3 pid=$4
    line=$(cat "$proc/$pid/stat" 2>/dev/null) || return 0  # it ended meanwhile
    # the name is in parentheses and may hold spaces and ")": fields follow the last ")"
    set -- ${line##*\)}
    [ $# -ge 7 ] || return 0
    ppid=$2 flags=$7
    case "$flags" in '' | *[!0-9]*) return 0 ;; esac
    [ "$pid" = 2 ] || [ "$ppid" = 2 ] || return 0
    # PF_KTHREAD (0x00200000) set, PF_NO_SETAFFINITY (0x04000000) not
    [ $((flags & 2097152)) -ne 0 ] && [ $((flags & 67108864)) -eq 0 ] || return 0
    comm=$(cat "$proc/$pid/comm" 2>/dev/null) || return 0
    was=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$proc/$pid/status" 2>/dev/null) ||
        return 0
    [ -n "$was" ] || return 0
    if [ "${dry_run:-0}" = 1 ]; then
        echo "would set kernel thread $pid ($comm) CPUs = $cpus (now $was)"
    elif why=$(taskset -pc "$cpus" "$pid" 2>&1 >/dev/null); then
        printf '%s\t%s\t%s\n' "$pid" "$was" "$comm" >> "$record"
        echo "set  kernel thread $pid ($comm) CPUs = $cpus (was $was)"
    else  # EINVAL: it may not move after all; ESRCH: it ended meanwhile
        echo "skip kernel thread $pid ($comm): ${why##*: }"
    fi
}

sysctl_settings() {  # FILE: "key value" for each "key = value" line of a sysctl.conf
    sed -n 's/^[[:space:]]*\([^#;=[:space:]][^=[:space:]]*\)[[:space:]]*=[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*$/\1 \2/p' "$1"
}

set_value() {
    set_path=$1 set_new=$2
    if [ "$dry_run" = 1 ] && [ -r "$set_path" ]; then
        set_note=""
        [ -w "$set_path" ] || set_note=" (not writable by this user)"
        echo "would set $set_path = $set_new (now $(cat "$set_path"))$set_note"
        return 0
    fi
    [ -w "$set_path" ] || { echo "skip $set_path (not writable here)"; return 0; }
    save "$set_path"
    # a value the kernel refuses (EINVAL from sysfs, a CPU it lacks) is skipped, named, and
    # the rest goes on: under set -e a failed write stopped the script half way, the
    # values after it never set (the old value is recorded: revert.sh writes it back,
    # which changes nothing)
    if (echo "$set_new" > "$set_path") 2>/dev/null; then
        echo "set  $set_path = $set_new (was $save_old)"
    else
        echo "skip $set_path (the kernel refused $set_new)"
    fi
}

# Every prerequisite first: nothing may change before all of them are known to be there
# (a missing python3 once stopped the script half way, governors and C-states changed).
missing=""
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v taskset >/dev/null 2>&1 || missing="$missing taskset (util-linux)"
[ -r "$here/sysctl.conf" ] || missing="$missing $here/sysctl.conf"
if [ -n "$missing" ]; then
    echo "apply.sh: missing:$missing; nothing was changed" >&2
    exit 1
fi
if ! housekeeping_words=$(cpu_list words "$housekeeping" 2>/dev/null) ||
    ! wq_mask=$(cpu_list mask "$housekeeping" 2>/dev/null) || [ -z "$housekeeping_words" ]; then
    echo "apply.sh: HOUSEKEEPING_CPUS '$housekeeping' is not a CPU list such as 0-1 or 0,2;" \
        "nothing was changed" >&2
    exit 1
fi
online_file=$root/sys/devices/system/cpu/online
if [ -r "$online_file" ]; then
    online_words=" $(cpu_list words "$(cat "$online_file")") "
    for n in $housekeeping_words; do
        case "$online_words" in
            *" $n "*) ;;
            *)
                echo "apply.sh: HOUSEKEEPING_CPUS '$housekeeping' names CPU $n, which is not" \
                    "online (online: $(cat "$online_file")); nothing was changed" >&2
                exit 1
                ;;
        esac
    done
fi
if [ "$dry_run" = 0 ] && [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    echo "apply.sh: needs root (sudo), or --dry-run to see what it would change;" \
        "nothing was changed" >&2
    exit 1
fi
if [ "$dry_run" = 0 ]; then
    mkdir -p "$state"
    [ -f "$saved" ] || : > "$saved"
fi

cpu=$root/sys/devices/system/cpu
for gov in "$cpu"/cpu[0-9]*/cpufreq/scaling_governor; do
    [ -e "$gov" ] && set_value "$gov" performance
done
for idle in "$cpu"/cpu[0-9]*/cpuidle/state[2-9]/disable; do
    [ -e "$idle" ] && set_value "$idle" 1
done
# engine CPUs (all but the housekeeping ones) never sleep in an idle state: "n/a" is a
# resume latency of 0, so an idle engine CPU polls and a thread woken onto it runs at once
# (housekeeping CPUs keep their idle states); what [engine] cpu_latency_us = 0 does for
# every CPU while an instance runs, here per CPU and until revert.sh
housekeeping_words=" $housekeeping_words "
for qos in "$cpu"/cpu[0-9]*/power/pm_qos_resume_latency_us; do
    n=${qos#"$cpu"/cpu}; n=${n%%/*}
    case "$housekeeping_words" in
        *" $n "*) ;;  # a housekeeping CPU keeps its idle states
        *) set_value "$qos" n/a ;;
    esac
done
set_value "$root/sys/kernel/mm/transparent_hugepage/enabled" madvise
# irqbalance first: running, it could move the IRQs back between their writes below
if systemctl is-active --quiet irqbalance 2>/dev/null; then
    if [ "$dry_run" = 1 ]; then
        echo "would stop irqbalance"
    else
        echo "irqbalance" >> "$state/services"
        systemctl stop irqbalance && echo "stopped irqbalance"
    fi
fi
for irq in "$root"/proc/irq/[0-9]*/smp_affinity_list; do
    set_value "$irq" "$housekeeping" 2>/dev/null || echo "skip $irq (managed by its driver)"
done
# unbound kernel workqueues (writeback, filesystem work) onto the housekeeping CPUs too
set_value "$root/sys/devices/virtual/workqueue/cpumask" "$wq_mask"
# appended to as well: revert.sh puts each thread back on the first CPU list recorded
move_kernel_threads "$housekeeping" "$root/proc" "$state/affinity"
# The sysctls: each written to its /proc/sys file through set_value like every value
# above, so its old value is recorded and revert.sh writes it back (loading a file with
# `sysctl --system` recorded nothing, and deleting the file again reset nothing). Only
# these keys change; a key this kernel lacks is skipped. kernel.watchdog_cpumask is the
# housekeeping CPUs given here: the soft-lockup watchdog's timers stay off engine CPUs.
while read -r key value; do
    set_value "$root/proc/sys/$(echo "$key" | sed 's|\.|/|g')" "$value"
done <<SETTINGS
$(sysctl_settings "$here/sysctl.conf")
kernel.watchdog_cpumask $housekeeping
SETTINGS
# the same settings in /etc/sysctl.d, so that a reboot keeps them until revert.sh
if [ "$dry_run" = 1 ]; then
    echo "would write $root/etc/sysctl.d/90-tradsys.conf"
    echo "dry run: nothing was changed or recorded"
    exit 0
fi
mkdir -p "$root/etc/sysctl.d"
{
    cat "$here/sysctl.conf"
    echo "# the housekeeping CPUs tuning/apply.sh was given"
    echo "kernel.watchdog_cpumask = $housekeeping"
} > "$root/etc/sysctl.d/90-tradsys.conf"
echo "wrote $root/etc/sysctl.d/90-tradsys.conf"
echo "done; undo with: sudo $here/revert.sh"
