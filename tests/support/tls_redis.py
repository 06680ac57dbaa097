"""A real redis-server speaking TLS only (rediss://), with a throwaway CA made by openssl, and ACL users."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from .waiting import free_port, wait_until

# The ACL rule docs/several-hosts.md gives a pricefeed deployment on key prefix PREFIX
# (test_several_hosts checks that the page shows exactly this): its keys and channels
# only, and only the commands pricefeed sends (those inside its Lua scripts included).
ACL_COMMANDS = ("+ping +get +pttl +hvals +evalsha +eval +script|load "
                "+subscribe +unsubscribe +publish +set +incr +pexpire +del +hset")


def acl_rule(prefix: str, password: str) -> str:
    return f"on >{password} resetkeys ~{prefix}:* resetchannels &{prefix}:* nocommands {ACL_COMMANDS}"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class TlsRedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("openssl") is None:
            raise RuntimeError("redis-server and openssl are needed: ./test.sh installs redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="redis-tls-"))
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days",
                 "2", "-subj", "/CN=pricefeed test CA", cwd=self.dir)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
                 "/CN=127.0.0.1", cwd=self.dir)
        (self.dir / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "server.pem", "-days", "2", "-extfile", "san.cnf", cwd=self.dir)
        self.ca = str(self.dir / "ca.pem")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem",
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.admin = redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=self.ca, socket_timeout=2)
        wait_until(self.admin.ping, 10, message=f"TLS redis-server on {self.port}")

    def add_user(self, name: str, rule: str) -> None:
        self.admin.execute_command("ACL", "SETUSER", name, *rule.split())

    def url(self, user: str, password: str) -> str:
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.admin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TlsRedisServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
