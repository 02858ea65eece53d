"""A paramiko SSH server with one account, run as a child process by the tests:
`python tests/ssh_server.py ADDRESS PORT HOST_KEY USER PASSWORD METHOD`, METHOD being
`password` or `keyboard-interactive` (the one way it takes the password).

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
    def __init__(self, user: str, password: str, method: str) -> None:
        self.user, self.password, self.method = user, password, method

    def get_allowed_auths(self, username: str) -> str:
        return f"{self.method},publickey"

    def _judge(self, username: str, password: str) -> int:
        if (username, password) == (self.user, self.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        return self._judge(username, password) if self.method == "password" else \
            paramiko.AUTH_FAILED

    def check_auth_interactive(self, username: str, submethods: str
                               ) -> int | paramiko.InteractiveQuery:
        if self.method != "keyboard-interactive":
            return paramiko.AUTH_FAILED
        self.asked = username
        return paramiko.InteractiveQuery("", "", ("Password: ", False))

    def check_auth_interactive_response(self, responses: list[str]) -> int:
        return self._judge(self.asked, responses[0] if len(responses) == 1 else "")

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


def serve(conn: socket.socket, key: paramiko.PKey, account: tuple[str, str, str]) -> None:
    transport = paramiko.Transport(conn)
    transport.add_server_key(key)
    try:
        transport.start_server(server=Server(*account))
        transport.join(SESSION_SECONDS)
    except (paramiko.SSHException, OSError, EOFError):
        pass
    finally:
        transport.close()


def main(address: str, port: str, host_key: str, user: str, password: str, method: str) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(host_key)
    with socket.create_server((address, int(port))) as listener:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn, key, (user, password, method)),
                             daemon=True).start()


if __name__ == "__main__":
    main(*sys.argv[1:7])
