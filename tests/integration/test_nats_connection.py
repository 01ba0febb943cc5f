"""Services reach NATS with credentials and over TLS, exactly as configured."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentstream.devstack.processes import ServiceProcess, free_port
from agentstream.devstack.stack import binary_path
from agentstream.runtime.nats_conn import connect_nats
from agentstream.runtime.settings import NatsSettings


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentstream test CA")])
    ca_cert = _certificate("agentstream test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
async def tls_nats(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A NATS server that speaks only TLS and wants a user and password."""
    ca, cert, key = _write_pki(tmp_path)
    port = free_port()
    server = ServiceProcess(
        "nats-tls",
        [
            binary_path("nats-server"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "--tls",
            "--tlscert",
            str(cert),
            "--tlskey",
            str(key),
            "--user",
            "gateway",
            "--pass",
            "s3cret-pass",
        ],
        {},
        tmp_path,
    )
    await server.start()
    try:
        await server.wait_for_line("Server is ready", 30)
        yield f"tls://127.0.0.1:{port}", ca
    finally:
        await server.stop()


async def test_connects_over_tls_with_user_and_password(tls_nats: tuple[str, Path]) -> None:
    url, ca = tls_nats
    settings = NatsSettings(url=url, user="gateway", password="s3cret-pass", tls_ca=str(ca))
    nc = await connect_nats(settings, name="test")
    try:
        sub = await nc.subscribe("live.default.run_tls")
        await nc.flush()
        await nc.publish("live.default.run_tls", b"over tls")
        message = await sub.next_msg(timeout=5)
        assert message.data == b"over tls"
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("password", "with_ca"),
    [("wrong-pass", True), ("s3cret-pass", False)],
    ids=["bad-password", "untrusted-server"],
)
async def test_refuses_a_wrong_password_or_an_untrusted_server(
    tls_nats: tuple[str, Path], password: str, with_ca: bool
) -> None:
    url, ca = tls_nats
    settings = NatsSettings(
        url=url, user="gateway", password=password, tls_ca=str(ca) if with_ca else None
    )
    # An unverifiable certificate must not be trusted: without the CA, the default context
    # (system roots) refuses it; a bad password is refused by the server.
    with pytest.raises((nats.errors.Error, ssl.SSLError)):
        nc = await nats.connect(
            [settings.url],
            user=settings.user,
            password=settings.password,
            tls=settings.tls_context() or ssl.create_default_context(),
            allow_reconnect=False,
            connect_timeout=5,
        )
        await nc.close()
