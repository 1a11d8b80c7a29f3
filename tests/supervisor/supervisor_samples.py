"""One supervisor setup written twice: as supervisord.conf (laid out as supervisord's documentation shows it,
with a conf.d/*.ini include and a group) and as the equivalent wsgistack.toml. Both readers must agree."""

from __future__ import annotations

from pathlib import Path

ENVIRON = {"HOME": "/home/dev"}

SUPERVISORD_CONF = """\
; Sample supervisor config file, laid out as supervisord's documentation shows it.

[unix_http_server]
file=%(here)s/run/supervisor.sock   ; the path to the socket file
chmod=0770                 ; socket file mode (default 0700)
chown=nobody:nogroup       ; socket file uid:gid owner
username=admin             ; default is no username (open server)
password=s3cret            ; default is no password (open server)

[inet_http_server]         ; inet (TCP) server disabled by default
port=127.0.0.1:9001        ; ip_address:port specifier, *:port for all iface
username=admin             ; default is no username (open server)
password=s3cret            ; default is no password (open server)

[supervisord]
logfile=%(here)s/logs/supervisord.log ; main log file; default $CWD/supervisord.log
logfile_maxbytes=50MB        ; max main logfile bytes b4 rotation; default 50MB
logfile_backups=10           ; # of main logfile backups; 0 means none, default 10
loglevel=info                ; log level; default info; others: debug,warn,trace
pidfile=%(here)s/run/supervisord.pid ; supervisord pidfile; default supervisord.pid
nodaemon=false               ; start in foreground if true; default false
silent=false                 ; no logs to stdout if true; default false
minfds=1024                  ; min. avail startup file descriptors; default 1024
minprocs=200                 ; min. avail process descriptors;default 200
umask=022                    ; process file creation umask; default 022
identifier=supervisor        ; supervisord identifier, default is 'supervisor'
childlogdir=%(here)s/logs    ; 'AUTO' child log dir, default $TEMP

; The rpcinterface:supervisor section must remain in the config file for
; RPC (supervisorctl/web interface) to work.
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/run/supervisor.sock ; use a unix:// URL  for a unix socket

[program:web]
command=%(ENV_HOME)s/venv/bin/gunicorn --bind 127.0.0.1:80%(process_num)02d app:app
process_name=%(program_name)s_%(process_num)02d ; process_name expr (default %(program_name)s)
numprocs=3                    ; number of processes copies to start (def 1)
directory=%(here)s            ; directory to cwd to before exec (def no cwd)
priority=100                  ; the relative start priority (default 999)
autorestart=true              ; when to restart if exited after running (def: unexpected)
startsecs=5                   ; # of secs prog must stay up to be running (def. 1)
exitcodes=0,2                 ; 'expected' exit codes used with autorestart (default 0)
stopsignal=QUIT               ; signal used to kill process (default TERM)
stopwaitsecs=30               ; max num secs to wait b4 SIGKILL (default 10)
redirect_stderr=true          ; redirect proc stderr to stdout (default false)
stdout_logfile=%(here)s/logs/%(program_name)s_%(process_num)02d.log
stdout_logfile_maxbytes=10MB  ; max # logfile bytes b4 rotation (default 50MB)
stdout_logfile_backups=5      ; # of stdout logfile backups (0 means none, default 10)
environment=PYTHONPATH="%(here)s/src",GREETING="hello, world",PORT=80%(process_num)02d
ready=http://127.0.0.1:80%(process_num)02d/health
ready_timeout=20

[program:redis]
command=/usr/bin/redis-server --port 6379 --save ""
priority=5
stdout_logfile=AUTO
stderr_logfile=NONE
stdout_logfile_maxbytes=1MB
ready=tcp:127.0.0.1:6379
backoff_max=10
max_restarts=5
restart_window=120

[include]
files = conf.d/*.ini

[group:jobs]
programs=worker,beat
priority=200
"""

WORKER_INI = """\
[program:worker]
command=celery -A app worker --loglevel=info --hostname=%(program_name)s@%(host_node_name)s
directory=%(here)s
user=nobody
umask=002
priority=200
startretries=10
stopasgroup=true
stopwaitsecs=600
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stderr_logfile=%(here)s/worker.err
stderr_logfile_maxbytes=1GB
stderr_logfile_backups=0
environment=QUEUES="default, high",C_FORCE_ROOT=1
depends_on=redis,web
"""

BEAT_INI = """\
[program:beat]
command=celery -A app beat --schedule "%(here)s/beat schedule.db"
autostart=false
autorestart=false
priority=210
stopsignal=SIGINT
killasgroup=true
depends_on=redis
"""

WSGISTACK_TOML = """\
[supervisor]
logfile = "%(here)s/logs/supervisord.log"
logfile_maxbytes = "50MB"
logfile_backups = 10
loglevel = "info"
pidfile = "%(here)s/run/supervisord.pid"
nodaemon = false
umask = "022"
identifier = "supervisor"
childlogdir = "%(here)s/logs"
socket = "%(here)s/run/supervisor.sock"
socket_mode = "0770"
socket_owner = "nobody:nogroup"
http = "127.0.0.1:9001"
username = "admin"
password = "s3cret"

[programs.web]
command = "%(ENV_HOME)s/venv/bin/gunicorn --bind 127.0.0.1:80%(process_num)02d app:app"
process_name = "%(program_name)s_%(process_num)02d"
numprocs = 3
directory = "%(here)s"
priority = 100
autorestart = true
startsecs = 5
exitcodes = [0, 2]
stopsignal = "QUIT"
stopwaitsecs = 30
redirect_stderr = true
stdout_logfile = "%(here)s/logs/%(program_name)s_%(process_num)02d.log"
stdout_logfile_maxbytes = "10MB"
stdout_logfile_backups = 5
ready = "http://127.0.0.1:80%(process_num)02d/health"
ready_timeout = 20

[programs.web.environment]
PYTHONPATH = "%(here)s/src"
GREETING = "hello, world"
PORT = "80%(process_num)02d"

[programs.redis]
command = ["/usr/bin/redis-server", "--port", "6379", "--save", ""]
priority = 5
stdout_logfile = "AUTO"
stderr_logfile = "NONE"
stdout_logfile_maxbytes = 1048576
ready = "tcp:127.0.0.1:6379"
backoff_max = 10
max_restarts = 5
restart_window = 120

[programs.worker]
group = "jobs"
command = "celery -A app worker --loglevel=info --hostname=%(program_name)s@%(host_node_name)s"
directory = "%(here)s/conf.d"
user = "nobody"
umask = "002"
priority = 200
startretries = 10
stopasgroup = true
stopwaitsecs = 600
stdout_logfile = "/dev/stdout"
stdout_logfile_maxbytes = 0
stderr_logfile = "%(here)s/conf.d/worker.err"
stderr_logfile_maxbytes = "1GB"
stderr_logfile_backups = 0
environment = { QUEUES = "default, high", C_FORCE_ROOT = 1 }
depends_on = ["redis", "web"]

[programs.beat]
group = "jobs"
command = ["celery", "-A", "app", "beat", "--schedule", "%(here)s/conf.d/beat schedule.db"]
autostart = false
autorestart = false
priority = 210
stopsignal = "SIGINT"
killasgroup = true
depends_on = "redis"
"""


def write_ini_sample(directory: Path) -> Path:
    """supervisord.conf and conf.d/*.ini in `directory` (with the logs/ and run/ that supervisord wants)."""
    (directory / "conf.d").mkdir()
    (directory / "logs").mkdir()
    (directory / "run").mkdir()
    (directory / "conf.d" / "worker.ini").write_text(WORKER_INI)
    (directory / "conf.d" / "beat.ini").write_text(BEAT_INI)
    (directory / "conf.d" / "README").write_text("not matched by the *.ini glob\n")
    conf = directory / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF)
    return conf


def write_toml_sample(directory: Path) -> Path:
    """The same setup as wsgistack.toml in `directory`."""
    path = directory / "wsgistack.toml"
    path.write_text(WSGISTACK_TOML)
    return path
