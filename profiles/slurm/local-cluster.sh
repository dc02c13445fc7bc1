#!/bin/sh
# local-cluster.sh: a one-node Slurm cluster on this machine, for CI and for trying
# the `slurm` profile without a real cluster (profiles/slurm-local uses it).
#
#   sh profiles/slurm/local-cluster.sh start [--fake-gpus N]   # prints the partition name
#   sh profiles/slurm/local-cluster.sh status                  # exit 0 when the cluster answers
#   sh profiles/slurm/local-cluster.sh stop                    # stops what `start` started
#
# `start` installs what is missing from Debian (munge, slurmctld, slurmd, slurm-client,
# slurmdbd, mariadb-server), writes /etc/slurm/{slurm,slurmdbd,gres}.conf, starts munged,
# mariadbd (socket only), slurmdbd, slurmctld and slurmd directly (no systemd needed),
# creates the account and waits until the node is idle. Job accounting is on, so `sacct`,
# the plugin's default status command, works. A second `start` with the same settings
# changes nothing; with other settings it restarts only the daemons whose config changed.
#
# `stop` cancels the cluster's jobs, then stops exactly the daemons this script started: it
# records each one's pid and kernel start time in its state directory and never signals a
# process it did not start (a munged or MariaDB that was already running is left alone).
#
# Only the partition name goes to stdout; progress and errors go to stderr. Must run as root.
#
# Settings (option, else environment variable, else default):
#   --fake-gpus N   ARCAL_SLURM_FAKE_GPUS  0       the node advertises N GPUs (gres backed by
#                                                  /dev/null) so `resources: gpu=1` jobs run
#   --partition P   ARCAL_SLURM_PARTITION  local
#   --account A     ARCAL_SLURM_ACCOUNT    arcal   created for the calling user (and $SUDO_USER)
#                   ARCAL_SLURM_STATE      /run/arcal-slurm   pids of started daemons, lock
#                   ARCAL_SLURM_WAIT       60      seconds to wait for each daemon
# The cluster is called `arcallocal`; Slurm's ports (6817-6819) and /etc/slurm are fixed,
# so there is one such cluster per machine.
set -eu

PROG=local-cluster.sh
CLUSTER=arcallocal
FAKE_GPUS=${ARCAL_SLURM_FAKE_GPUS:-0}
PARTITION=${ARCAL_SLURM_PARTITION:-local}
ACCOUNT=${ARCAL_SLURM_ACCOUNT:-arcal}
STATE=${ARCAL_SLURM_STATE:-/run/arcal-slurm}
WAIT=${ARCAL_SLURM_WAIT:-60}
MARKER="# Written by arcal's profiles/slurm/local-cluster.sh; edits are overwritten."
ETC=/etc/slurm
DB_PASS=arcal-local-slurmdbd # socket-only database on this machine, not a secret
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
usage() {
    cat >&2 <<EOF
usage: $PROG start [--fake-gpus N] [--partition NAME] [--account NAME]
       $PROG status
       $PROG stop
EOF
    exit 2
}

# ---- processes -------------------------------------------------------------------------

# Kernel start time (clock ticks since boot) of a pid: with the pid it identifies one
# process for good, so a recycled pid is never mistaken for a daemon we started.
start_time() {
    [ -r "/proc/$1/stat" ] || return 1
    sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20
}

comm_of() { cat "/proc/$1/comm" 2>/dev/null; }

# Pids of running processes whose command name is $1.
pids_named() {
    for _c in /proc/[0-9]*/comm; do
        [ "$(cat "$_c" 2>/dev/null)" = "$1" ] && { _p=${_c#/proc/}; echo "${_p%/comm}"; }
    done
    return 0
}

# Pid of daemon $1 if this script started it and it still runs; fails otherwise.
our_pid() {
    [ -s "$STATE/$1.pid" ] || return 1
    read -r _pid _start <"$STATE/$1.pid" || return 1
    [ "$(comm_of "$_pid")" = "$1" ] && [ "$(start_time "$_pid")" = "$_start" ] && echo "$_pid"
}

# Record the daemon $1 whose own pid file is $2 as started by us.
record() {
    _i=0
    while :; do
        if [ -s "$2" ]; then
            _pid=$(cat "$2")
            if [ "$(comm_of "$_pid")" = "$1" ]; then
                echo "$_pid $(start_time "$_pid")" >"$STATE/$1.pid"
                log "started $1 (pid $_pid)"
                return 0
            fi
        fi
        _i=$((_i + 1))
        [ "$_i" -le $((WAIT * 5)) ] || die "$1 did not write its pid file $2 within ${WAIT}s (see $3)"
        sleep 0.2
    done
}

# Stop daemon $1 if (and only if) we started it.
stop_ours() {
    if _pid=$(our_pid "$1"); then
        _start=$(start_time "$_pid")
        log "stopping $1 (pid $_pid)"
        kill -TERM "$_pid" 2>/dev/null || true
        _i=0
        while [ "$(start_time "$_pid" 2>/dev/null)" = "$_start" ] && [ "$_i" -lt 150 ]; do
            sleep 0.2
            _i=$((_i + 1))
        done
        if [ "$(start_time "$_pid" 2>/dev/null)" = "$_start" ]; then
            log "$1 (pid $_pid) ignored SIGTERM for 30s; sending SIGKILL"
            kill -KILL "$_pid" 2>/dev/null || true
        fi
    else
        for _p in $(pids_named "$1"); do log "leaving $1 (pid $_p) running: not started by $PROG"; done
    fi
    rm -f "$STATE/$1.pid"
}

# Is daemon $1 running (started by anyone)?
running() { [ -n "$(pids_named "$1")" ]; }

# Wait until "$@" succeeds; the first argument names what we wait for, the second its log.
wait_until() {
    _what=$1
    _log=$2
    shift 2
    _i=0
    until "$@" >/dev/null 2>&1; do
        _i=$((_i + 1))
        if [ "$_i" -gt $((WAIT * 4)) ]; then
            [ -r "$_log" ] && tail -n 15 "$_log" >&2
            die "$_what not ready after ${WAIT}s (log: $_log)"
        fi
        sleep 0.25
    done
}

# ---- configuration -----------------------------------------------------------------------

# Write stdin to $1 (mode $2, owner $3) if the content differs; returns 0 when it changed.
put_file() {
    _new=$(mktemp "$1.XXXXXX")
    cat >"$_new"
    chmod "$2" "$_new"
    chown "$3" "$_new"
    if [ -f "$1" ] && cmp -s "$_new" "$1"; then
        rm -f "$_new"
        return 1
    fi
    if [ -f "$1" ] && ! grep -qxF "$MARKER" "$1"; then
        rm -f "$_new"
        die "$1 exists and was not written by $PROG (a real cluster's config?); move it away first"
    fi
    mv "$_new" "$1"
    log "wrote $1"
    return 0
}

install_packages() {
    _missing=""
    for _p in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$_p" 2>/dev/null | grep -q ' installed$' || _missing="$_missing $_p"
    done
    [ -z "$_missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing Debian packages:$_missing, and apt-get is not available"
    log "installing:$_missing"
    # Package scripts must not start the daemons (with the packaged defaults): a
    # policy-rc.d that says "no" keeps them down; the image usually ships one already.
    _policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        _policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$_policy"
        chmod 755 "$_policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $_missing >&2 || die "apt-get install$_missing failed"
    if [ -n "$_policy" ]; then
        rm -f "$_policy"
        trap - EXIT
    fi
}

write_slurm_conf() {
    _host=$1
    # `slurmd -C` prints the real topology: NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105
    _node=$(slurmd -C 2>/dev/null | sed -n 's/^NodeName=[^ ]* //p' | head -n 1)
    [ -n "$_node" ] || die "slurmd -C did not report this machine's topology"
    _mem=$(echo "$_node" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    _topo=$(echo "$_node" | sed 's/ *RealMemory=[0-9]*//')
    _gres=""
    [ "$FAKE_GPUS" -gt 0 ] && _gres=" Gres=gpu:$FAKE_GPUS"
    put_file "$ETC/slurm.conf" 644 root:root <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$_host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups: processes are tracked through /proc, jobs are not contained.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
# Finished jobs stay in squeue for 5 minutes, so --slurm-status-command squeue also works.
MinJobAge=300
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
NodeName=$_host NodeAddr=127.0.0.1 $_topo RealMemory=$((_mem * 9 / 10))$_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=$_host Default=YES MaxTime=INFINITE State=UP
EOF
}

write_gres_conf() {
    if [ "$FAKE_GPUS" -gt 0 ]; then
        # One line per fake device; File= is required (without it slurmd reports 0 GPUs
        # and the node is drained), and /dev/null is a file every machine has.
        _i=0
        while [ "$_i" -lt "$FAKE_GPUS" ]; do
            echo "NodeName=$1 Name=gpu File=/dev/null"
            _i=$((_i + 1))
        done | { echo "$MARKER" && cat; } | put_file "$ETC/gres.conf" 644 root:root
    elif [ -f "$ETC/gres.conf" ]; then
        grep -qxF "$MARKER" "$ETC/gres.conf" || die "$ETC/gres.conf exists and was not written by $PROG; move it away first"
        rm -f "$ETC/gres.conf"
        log "removed $ETC/gres.conf"
    else
        return 1
    fi
}

write_slurmdbd_conf() {
    put_file "$ETC/slurmdbd.conf" 600 slurm:slurm <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

# ---- daemons -----------------------------------------------------------------------------

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    if ! running munged; then
        rm -f /run/munge/munged.pid
        start-stop-daemon --start --quiet --chuid munge:munge --exec /usr/sbin/munged 9>&-
        record munged /run/munge/munged.pid /var/log/munge/munged.log
    fi
    wait_until munged /var/log/munge/munged.log sh -c 'munge -n | unmunge'
}

start_mariadb() {
    install -d -o mysql -g mysql -m 755 /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "creating the MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >&2
    fi
    if ! mariadb-admin ping >/dev/null 2>&1; then
        running mariadbd && die "mariadbd runs (pid $(pids_named mariadbd)) but does not answer on its socket"
        rm -f /run/mysqld/mysqld.pid
        start-stop-daemon --start --quiet --background --exec /usr/sbin/mariadbd -- \
            --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
            --log-error=/var/log/mysql/error.log --innodb-buffer-pool-size=128M 9>&-
        record mariadbd /run/mysqld/mysqld.pid /var/log/mysql/error.log
    fi
    wait_until mariadbd /var/log/mysql/error.log mariadb-admin ping
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
        die "could not create the slurm_acct_db database and its user in MariaDB"
}

# Stop Slurm daemon $1 for a restart with a new config, but only if we started it.
stop_for_restart() {
    running "$1" || return 0
    our_pid "$1" >/dev/null ||
        die "$1 (pid $(pids_named "$1" | tr '\n' ' ')) was not started by $PROG and needs a restart for the new config; stop it first"
    stop_ours "$1"
}

# Daemons are started with fd 9 (the lock) closed: one that inherited it would hold the
# lock for its whole life and make every later start/stop wait for it.
# Start Slurm daemon $1 (binary /usr/sbin/$1, pid file /run/$1.pid) unless it runs.
start_slurm_daemon() {
    if ! running "$1"; then
        rm -f "/run/$1.pid"
        "/usr/sbin/$1" 9>&- || die "/usr/sbin/$1 failed to start (see /var/log/slurm/$1.log)"
        record "$1" "/run/$1.pid" "/var/log/slurm/$1.log"
    fi
}

node_up() { sinfo -h -n "$1" -o %T | grep -qE '^(idle|mixed|allocated)'; }

# sacctmgr prints nothing for a missing entity; $1 = entity, $2 = a field, rest = filters.
sacctmgr_has() {
    _what=$1
    _field=$2
    shift 2
    [ -n "$(sacctmgr -n -P list "$_what" "$@" format="$_field" 2>/dev/null)" ]
}

do_start() {
    [ "$(id -u)" = 0 ] || die "start must run as root (it installs packages and starts daemons)"
    case $FAKE_GPUS in '' | *[!0-9]*) die "--fake-gpus must be a whole number, got '$FAKE_GPUS'" ;; esac
    case $PARTITION in '' | *[!A-Za-z0-9_-]*) die "bad partition name '$PARTITION' (letters, digits, _ and - only)" ;; esac
    case $ACCOUNT in '' | *[!a-z0-9_-]*) die "bad account name '$ACCOUNT' (lower-case letters, digits, _ and - only)" ;; esac
    _t0=$(date +%s)
    install -d -m 700 "$STATE"
    exec 9>"$STATE/lock"
    flock -w 600 9 || die "another $PROG holds $STATE/lock"

    install_packages
    _host=$(hostname -s)
    install -d -m 755 "$ETC"
    install -d -o slurm -g slurm -m 755 /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
    install -d -m 755 /var/lib/slurm/slurmd

    # Every client command (sacctmgr too) reads slurm.conf: write all configs first.
    _dbd_changed=0
    write_slurmdbd_conf && _dbd_changed=1
    _changed=0
    write_slurm_conf "$_host" && _changed=1
    write_gres_conf "$_host" && _changed=1

    start_munge
    start_mariadb
    [ "$_dbd_changed" = 1 ] && stop_for_restart slurmdbd
    start_slurm_daemon slurmdbd
    wait_until slurmdbd /var/log/slurm/slurmdbd.log sacctmgr -n list cluster
    sacctmgr_has cluster cluster "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >&2

    # slurmd reads the node's gres at start and slurmctld checks it: restart both together.
    if [ "$_changed" = 1 ]; then
        stop_for_restart slurmd
        stop_for_restart slurmctld
    fi
    start_slurm_daemon slurmctld
    wait_until slurmctld /var/log/slurm/slurmctld.log scontrol ping
    start_slurm_daemon slurmd
    if ! (WAIT=$((WAIT / 2)) && wait_until "node $_host" /dev/null node_up "$_host") 2>/dev/null; then
        # e.g. drained by an earlier config with other gres: bring it back once
        scontrol update nodename="$_host" state=resume >&2 || true
        wait_until "node $_host ($(sinfo -h -n "$_host" -o '%T %E'))" /var/log/slurm/slurmd.log node_up "$_host"
    fi

    sacctmgr_has account account "$ACCOUNT" || sacctmgr -i add account "$ACCOUNT" Description="arcal local cluster" Organization=arcal >&2
    for _u in "$(id -un)" "${SUDO_USER:-}"; do
        [ -n "$_u" ] || continue
        sacctmgr_has assoc account user="$_u" account="$ACCOUNT" || sacctmgr -i add user "$_u" Account="$ACCOUNT" >&2
    done
    log "cluster $CLUSTER ready in $(($(date +%s) - _t0))s: partition $PARTITION, account $ACCOUNT, node $_host ($(sinfo -h -n "$_host" -o '%c CPUs, %m MB, gres %G'))"
    echo "$PARTITION"
}

do_stop() {
    [ -d "$STATE" ] || {
        log "nothing to stop ($STATE does not exist)"
        return 0
    }
    [ -w "$STATE" ] || die "stop must run as the user that started the cluster (root)"
    exec 9>"$STATE/lock"
    flock -w 600 9 || die "another $PROG holds $STATE/lock"
    # Jobs left in a stopped slurmctld's saved state come back as RUNNING (with no process
    # behind them) at the next start: cancel them while the controller still answers.
    if our_pid slurmctld >/dev/null && scontrol ping >/dev/null 2>&1; then
        _jobs=$(squeue -h -o %i | tr '\n' ' ')
        if [ -n "$_jobs" ]; then
            log "cancelling the cluster's jobs: $_jobs"
            # shellcheck disable=SC2086 # one argument per job id
            scancel $_jobs || true
        fi
    fi
    for _d in slurmd slurmctld slurmdbd mariadbd munged; do stop_ours "$_d"; done
}

do_status() {
    _rc=0
    for _d in munged mariadbd slurmdbd slurmctld slurmd; do
        if _pid=$(our_pid "$_d"); then
            echo "$_d: running, pid $_pid (started by $PROG)"
        elif running "$_d"; then
            echo "$_d: running, pid $(pids_named "$_d" | tr '\n' ' ')(not started by $PROG)"
        else
            echo "$_d: not running"
            _rc=3
        fi
    done
    if scontrol ping >/dev/null 2>&1; then
        sinfo -o '%P %a %D %T %c %m %G'
    else
        echo "slurmctld does not answer"
        _rc=3
    fi
    return "$_rc"
}

ACTION=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case $1 in
        --fake-gpus) [ $# -ge 2 ] || usage; FAKE_GPUS=$2; shift 2 ;;
        --fake-gpus=*) FAKE_GPUS=${1#*=}; shift ;;
        --partition) [ $# -ge 2 ] || usage; PARTITION=$2; shift 2 ;;
        --partition=*) PARTITION=${1#*=}; shift ;;
        --account) [ $# -ge 2 ] || usage; ACCOUNT=$2; shift 2 ;;
        --account=*) ACCOUNT=${1#*=}; shift ;;
        *) log "unknown argument '$1'"; usage ;;
    esac
done
case $ACTION in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
