#!/bin/bash
# A single-node OAR 2.5.9 (Debian 12 packages) on this machine, without systemd, for `aiax-bench study --cluster oar`.
# Installs nothing. Prerequisites (mariadb-server must also be installed):
#   DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       oar-server oar-node oar-user oar-server-mysql oar-user-mysql
# OAR gets its OWN MariaDB instance (127.0.0.1:3307, sql_mode='') because OAR 2.5.9's
# MySQL code does not work with MariaDB 10.11's default STRICT_TRANS_TABLES
# ("Field 'expiry_date' doesn't have a default value" -> resources are silently not inserted),
# and any MariaDB already running (e.g. for slurm) must not be touched.
# Idempotent: re-running only starts what is not running.
# OAR refuses jobs from root (admission rule "Prevent users oar and root to submit jobs"): submit as a
# normal user who can run the project's Python.
set -euo pipefail
BASE=${OAR_LOCALHOST_DIR:-/var/lib/aiax-oar-localhost}
MYDIR=$BASE/oar-mariadb            # datadir + socket + pid of OAR's private MariaDB
MYPORT=${OAR_DB_PORT:-3307}
MYSOCK=$MYDIR/mysqld.sock
ADMIN_PASS=${OAR_DB_ADMIN_PASS:-oaradminpass}
OAR_DB_PASS=${OAR_DB_PASS:-oarpass}
OAR_DB_RO_PASS=${OAR_DB_RO_PASS:-oarropass}
NODE=${OAR_NODE_NAME:-localhost}
NCORES=${OAR_NCORES:-$(nproc)}
CONF=/etc/oar/oar.conf
mkdir -p "$BASE"
exec > >(tee -a "$BASE/oar-localhost.log") 2>&1
echo "=== $(date -Is) oar-localhost.sh"
T0=$(date +%s)

# ---- 1. private MariaDB for OAR ----
if [ ! -d "$MYDIR/mysql" ]; then
    mkdir -p "$MYDIR/data"; chown -R mysql:mysql "$MYDIR"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MYDIR/data" \
        --auth-root-authentication-method=socket > "$BASE/mariadb-install-db.log" 2>&1
    touch "$MYDIR/mysql"   # marker: initialised
fi
if ! mysqladmin --no-defaults -S "$MYSOCK" -uroot ping >/dev/null 2>&1; then
    (setsid mariadbd --no-defaults --user=mysql --datadir="$MYDIR/data" \
        --socket="$MYSOCK" --pid-file="$MYDIR/mysqld.pid" --port="$MYPORT" \
        --bind-address=127.0.0.1 --sql-mode='' --skip-log-bin \
        --log-error="$BASE/oar-mariadb.err" </dev/null >/dev/null 2>&1 &)
    for i in $(seq 1 60); do
        mysqladmin --no-defaults -S "$MYSOCK" -uroot ping >/dev/null 2>&1 && break; sleep 0.5
    done
fi
mysqladmin --no-defaults -S "$MYSOCK" -uroot ping
mysql --no-defaults -S "$MYSOCK" -uroot -e "
  CREATE USER IF NOT EXISTS 'oaradmin'@'%' IDENTIFIED BY '$ADMIN_PASS';
  GRANT ALL PRIVILEGES ON *.* TO 'oaradmin'@'%' WITH GRANT OPTION;
  CREATE USER IF NOT EXISTS 'oaradmin'@'localhost' IDENTIFIED BY '$ADMIN_PASS';
  GRANT ALL PRIVILEGES ON *.* TO 'oaradmin'@'localhost' WITH GRANT OPTION;"

# ---- 2. oar.conf ----
setconf() {  # setconf KEY VALUE: replace the active line, or append
    if grep -qE "^$1=" "$CONF"; then sed -i -E "s|^$1=.*|$1=\"$2\"|" "$CONF"
    else echo "$1=\"$2\"" >> "$CONF"; fi
}
setconf DB_TYPE mysql
setconf DB_HOSTNAME 127.0.0.1          # TCP, so that the default socket (slurm's server) is never used
setconf DB_PORT "$MYPORT"
setconf DB_BASE_NAME oar
setconf DB_BASE_LOGIN oar
setconf DB_BASE_PASSWD "$OAR_DB_PASS"
setconf DB_BASE_LOGIN_RO oar_ro
setconf DB_BASE_PASSWD_RO "$OAR_DB_RO_PASS"
setconf SERVER_HOSTNAME localhost
# no cpuset/cgroup confinement of jobs (container without a usable cgroup cpuset hierarchy)
sed -i -E 's|^(JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD=.*)|#\1|' "$CONF"
chown oar:oar "$CONF"; chmod 600 "$CONF"
touch /var/log/oar.log; chown oar:oar /var/log/oar.log

# ---- 3. OAR database ----
if oar-database --check >/dev/null 2>&1; then
    echo "OAR database already ready"
else
    # Debian's mysql_structure.sql fails on MariaDB 10.11 for table walltime_change (column named
    # `force`, a reserved word) and default admission rule #8 ("inner" container jobs) has broken
    # quoting: run with -f (mysql --force) and create walltime_change by hand, back-quoted.
    oar-database --create -y -f --db-admin-user=oaradmin --db-admin-pass="$ADMIN_PASS" \
        > "$BASE/oar-database-create.log" 2>&1 || true
    mysql --no-defaults -S "$MYSOCK" -uroot oar <<'SQL'
CREATE TABLE IF NOT EXISTS walltime_change (
job_id INT UNSIGNED NOT NULL, pending INT NOT NULL DEFAULT 0,
`force` ENUM('YES','NO') DEFAULT 'NO' NOT NULL, delay_next_jobs ENUM('YES','NO') DEFAULT 'NO' NOT NULL,
granted INT NOT NULL DEFAULT 0, granted_with_force INT NOT NULL DEFAULT 0,
granted_with_delay_next_jobs INT NOT NULL DEFAULT 0, INDEX id (job_id), PRIMARY KEY (job_id));
GRANT SELECT ON oar.walltime_change TO 'oar_ro'@'localhost';
GRANT SELECT ON oar.walltime_change TO 'oar_ro'@'%';
FLUSH PRIVILEGES;
SQL
    oar-database --check
fi

# ---- 4. oar-node: dedicated sshd on port 6667 (what /etc/init.d/oar-node start does) ----
mkdir -p /run/sshd; chmod 755 /run/sshd
if [ -f /run/oar-node_sshd.pid ] && kill -0 "$(cat /run/oar-node_sshd.pid)" 2>/dev/null; then
    echo "oar-node sshd already running"
else
    /usr/sbin/sshd -f /etc/oar/sshd_config -o PidFile=/run/oar-node_sshd.pid
fi
su -s /bin/bash oar -c "ssh -p 6667 -o StrictHostKeyChecking=no -o BatchMode=yes $NODE true"

# ---- 5. oar-server (Almighty); /usr/sbin/oar-server daemonizes and writes /run/oar-server.pid ----
if [ -f /run/oar-server.pid ] && kill -0 "$(cat /run/oar-server.pid)" 2>/dev/null; then
    echo "oar-server already running"
else
    /usr/sbin/oar-server
fi
for i in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/6666) 2>/dev/null && break; sleep 0.5; done

# ---- 6. resources: NCORES cores of host $NODE ----
oarproperty -l | grep -qx cpu  || oarproperty -a cpu
oarproperty -l | grep -qx core || oarproperty -a core
if [ "$(oarnodes -l 2>/dev/null | grep -cx "$NODE" || true)" = 0 ]; then
    for c in $(seq 0 $((NCORES-1))); do
        oarnodesetting -a -h "$NODE" -p cpu=0 -p core=$c -p cpuset=$c
    done
fi
oarnodesetting -s Alive -h "$NODE"
oarnodes -s
echo "=== $(date -Is) OAR ready in $(( $(date +%s) - T0 ))s"
