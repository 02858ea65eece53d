"""A paramiko SSH server that takes one password login, run as a child process by the tests:
`python tests/ssh_server.py ADDRESS PORT HOST_KEY USER PASSWORD`.

It stands in for an SSH device with a factory password, where OpenSSH and dropbear would need a
system account: the account lives only in this process. A login gets an SSH session and nothing
else (every channel is refused). It serves until terminated; each connection ends within
SESSION_SECONDS.
"""

from __future__ import annotations

import socket
import sys
import threading

import paramiko

SESSION_SECONDS = 30.0


class Server(paramiko.ServerInterface):
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        if (username, password) == (self.user, self.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


def serve(conn: socket.socket, key: paramiko.PKey, user: str, password: str) -> None:
    transport = paramiko.Transport(conn)
    transport.add_server_key(key)
    try:
        transport.start_server(server=Server(user, password))
        transport.join(SESSION_SECONDS)
    except (paramiko.SSHException, OSError, EOFError):
        pass
    finally:
        transport.close()


def main(address: str, port: str, host_key: str, user: str, password: str) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(host_key)
    with socket.create_server((address, int(port))) as listener:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn, key, user, password), daemon=True).start()


if __name__ == "__main__":
    main(*sys.argv[1:6])
