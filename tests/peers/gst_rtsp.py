"""A real RTSP server for the tests: GStreamer's gst-rtsp-server through its GObject bindings.

Run with Debian's python3 (python3-gi, gir1.2-gst-rtsp-server-1.0):
`gst_rtsp.py ADDRESS PORT PATH [PEM [USER PASSWORD [SCHEME]]]`. It serves an audio test tone at
PATH; with PEM (a certificate and its key, or `-`), RTSP runs inside TLS (RTSPS); with a user
and password every request must carry them, as a camera's does, by Basic authentication or,
with SCHEME `digest`, by Digest authentication only.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main(address: str, port: str, path: str, pem: str = "-", *account: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(address)
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( audiotestsrc is-live=true ! audioconvert ! rtpL16pay name=pay0 )")
    factory.set_shared(True)
    auth = GstRtspServer.RTSPAuth()
    if pem != "-":
        auth.set_tls_certificate(Gio.TlsCertificate.new_from_file(pem))
    if account:
        user, password, *scheme = account
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", user)
        if scheme == ["digest"]:
            auth.add_digest(user, password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(user, "media.factory.access", True)
        permissions.add_permission_for_role(user, "media.factory.construct", True)
        factory.set_permissions(permissions)
    if account or pem != "-":
        server.set_auth(auth)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on {address}:{port}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(*sys.argv[1:])
