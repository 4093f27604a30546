"""Connecting to a secured Temporal through Temporal's environment configuration (a profile of
the TOML file, ``TEMPORAL_*`` variables): TLS with a private CA and mTLS client certificates
through a real TLS-terminating proxy in front of the dev server, API keys (with TLS) seen by a
gRPC frontend, and the one-line errors of a wrong configuration."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from activities import WorkerSettings
from starter.client import (
    ConnectionConfigError,
    TideflowClient,
    connect_config,
)
from starter.client.connection import describe_config
from tests.servers.tideflow_worker import Tideflow
from tests.servers.tls import Authority, Issued, TlsProxy
from tests.test_cli import Cli, one_line_error

QUICK = """
name: Secured Hello
tasks:
  - {id: only, type: set, config: {}}
"""


@pytest.fixture
def cli(tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tideflow`` with a data folder of the test (Temporal: as each test configures it)."""
    env = {"TIDEFLOW_HOME": str(tmp_path / "home"), "TIDEFLOW_TASK_QUEUE": tideflow.task_queue}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Cli(env, tideflow.task_queue)


def _profiles(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TEMPORAL_* variable of the developer's or of another test leaks in."""
    for name in (
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_PROFILE",
        "TEMPORAL_CONFIG_FILE",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_SERVER_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_profile_and_variables_are_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    config = _profiles(
        tmp_path / "temporal.toml",
        f"""
        [profile.default]
        address = "default-host:7233"

        [profile.cloud]
        address = "acme.a1b2c.tmprl.cloud:7233"
        namespace = "acme.a1b2c"
        api_key = "sekret-api-key"

        [profile.mtls]
        address = "secure-host:7233"
        namespace = "ops"
        [profile.mtls.tls]
        server_name = "temporal.internal"
        server_ca_cert_path = "{tmp_path / "ca.pem"}"
        client_cert_path = "{tmp_path / "client.pem"}"
        client_key_path = "{tmp_path / "client.key"}"
        """,
    )
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(config))
    assert connect_config() == {"target_host": "default-host:7233", "namespace": "default"}

    clean_env.setenv("TEMPORAL_PROFILE", "cloud")
    cloud = connect_config()
    assert (cloud["target_host"], cloud["namespace"], cloud["api_key"], cloud["tls"]) == (
        "acme.a1b2c.tmprl.cloud:7233",
        "acme.a1b2c",
        "sekret-api-key",
        True,  # an API key turns TLS on
    )
    shown = describe_config(cloud)
    assert shown == "acme.a1b2c.tmprl.cloud:7233 (namespace acme.a1b2c, TLS, API key)"
    assert "sekret" not in shown

    clean_env.setenv("TEMPORAL_PROFILE", "mtls")
    mtls = connect_config()
    tls = mtls["tls"]
    assert (tls.domain, tls.client_cert, tls.server_root_ca_cert) == (
        "temporal.internal",
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\n",
    )
    assert describe_config(mtls) == "secure-host:7233 (namespace ops, TLS, client certificate)"

    # Variables override the profile; explicit arguments override both.
    clean_env.setenv("TEMPORAL_ADDRESS", "override:1234")
    clean_env.setenv("TEMPORAL_NAMESPACE", "other")
    assert (connect_config()["target_host"], connect_config()["namespace"]) == (
        "override:1234",
        "other",
    )
    assert connect_config("given:1", "given-ns")["target_host"] == "given:1"


def test_a_wrong_configuration_is_one_clear_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _profiles(tmp_path / "temporal.toml", '[profile.default]\naddress = "x:1"\n')
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(config))
    clean_env.setenv("TEMPORAL_PROFILE", "prod")
    with pytest.raises(ConnectionConfigError, match=r"profile 'prod'.*not found"):
        connect_config()
    clean_env.delenv("TEMPORAL_PROFILE")
    clean_env.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "missing.pem"))
    with pytest.raises(ConnectionConfigError, match=r"cannot read .*missing\.pem: no such file"):
        connect_config()
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "nowhere.toml"))
    with pytest.raises(ConnectionConfigError, match=r"nowhere\.toml: no such file"):
        connect_config()


async def test_the_cli_names_a_wrong_profile(
    cli: Cli, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _profiles(tmp_path / "temporal.toml", '[profile.default]\naddress = "x:1"\n')
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(config))
    clean_env.setenv("TEMPORAL_PROFILE", "prod")
    result = await cli("list")
    assert one_line_error(result) == (
        "cannot connect to Temporal: Temporal client configuration (profile 'prod'): "
        "Profile 'prod' not found"
    )


# --- TLS and mTLS through a real TLS-terminating proxy -------------------------------------------


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def _secure_profile(
    path: Path, address: str, ca: Path, client: Issued | None, name: str = "secure"
) -> None:
    lines = [
        f"[profile.{name}]",
        f'address = "{address}"',
        f"[profile.{name}.tls]",
        'server_name = "localhost"',
        f'server_ca_cert_path = "{ca}"',
    ]
    if client is not None:
        lines += [f'client_cert_path = "{client.cert}"', f'client_key_path = "{client.key}"']
    with path.open("a") as out:
        out.write("\n".join(lines) + "\n\n")


async def test_runs_go_through_mtls_with_the_profiles_client_certificate(
    tideflow: Tideflow,
    authority: Authority,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = authority.issue("localhost", server=True)
    client_cert = authority.issue("tideflow-worker-7", server=False)
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", name="Other CA")
    foreign = stranger.issue("intruder", server=False)
    proxy = TlsProxy(upstream=tideflow.address, server=server, client_ca=authority.ca)
    profiles = tmp_path / "temporal.toml"
    with proxy.running():
        _secure_profile(profiles, proxy.address, authority.ca, client_cert)
        _secure_profile(profiles, proxy.address, authority.ca, None, name="nocert")
        _secure_profile(profiles, proxy.address, authority.ca, foreign, name="foreign")
        _secure_profile(profiles, proxy.address, stranger.ca, client_cert, name="untrusted")
        clean_env.setenv("TEMPORAL_CONFIG_FILE", str(profiles))
        clean_env.setenv("TEMPORAL_PROFILE", "secure")
        settings = WorkerSettings(home=tideflow.home, task_queue=tideflow.task_queue)

        client = await TideflowClient.connect(settings=settings, audit=False, lineage=False)
        assert client.temporal.service_client.config.target_host == proxy.address
        report = await client.run(tideflow.load(QUICK))
        assert report.status == "completed"
        assert "tideflow-worker-7" in proxy.clients  # the proxy saw the profile's certificate

        for profile in ("nocert", "foreign", "untrusted"):
            clean_env.setenv("TEMPORAL_PROFILE", profile)
            with pytest.raises(RuntimeError, match=r"(?i)connect"):  # the SDK's connect error
                await TideflowClient.connect(settings=settings, audit=False, lineage=False)
    assert "intruder" not in proxy.clients  # the other CA's certificate never got through


async def test_the_cli_reports_a_tls_failure_in_one_line(
    cli: Cli,
    tideflow: Tideflow,
    authority: Authority,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = authority.issue("localhost", server=True)
    client_cert = authority.issue("tideflow-cli", server=False)
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", name="Other CA")
    # TLS 1.2: the refused client certificate fails the handshake itself, as the CLI sees it.
    proxy = TlsProxy(upstream=tideflow.address, server=server, client_ca=authority.ca, tls12=True)
    profiles = tmp_path / "temporal.toml"
    with proxy.running():
        _secure_profile(profiles, proxy.address, authority.ca, None, name="nocert")
        _secure_profile(profiles, proxy.address, stranger.ca, client_cert, name="untrusted")
        clean_env.setenv("TEMPORAL_CONFIG_FILE", str(profiles))
        clean_env.setenv("TEMPORAL_PROFILE", "nocert")
        no_certificate = one_line_error(await cli("list"))
        clean_env.setenv("TEMPORAL_PROFILE", "untrusted")
        untrusted = one_line_error(await cli("list"))
    at = f"cannot reach Temporal at {proxy.address}: "
    assert no_certificate.startswith(at + "the server closed the TLS connection"), no_certificate
    assert "client certificate" in no_certificate
    assert untrusted.startswith(at + "the server's certificate is not signed by a trusted CA")


# --- API keys -------------------------------------------------------------------------------------


class _Frontend(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A stand-in Temporal frontend recording each call's metadata; it answers the call
    ``Client.connect`` makes."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def service(self, details: Any) -> Any:
        self.metadata.append({k: str(v) for k, v in details.invocation_metadata})
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")


@contextmanager
def frontend(server_cert: Issued | None) -> Iterator[tuple[str, _Frontend]]:
    handler = _Frontend()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    if server_cert is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        credentials = grpc.ssl_server_credentials(
            [(server_cert.key.read_bytes(), server_cert.cert.read_bytes())]
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        server.stop(0)


async def test_an_api_key_is_sent_over_tls_as_temporal_cloud_expects(
    authority: Authority, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = authority.issue("localhost", server=True)
    with frontend(server) as (address, seen):
        profiles = _profiles(
            tmp_path / "temporal.toml",
            f"""
            [profile.cloud]
            address = "{address}"
            namespace = "acme.a1b2c"
            api_key = "sekret-api-key"
            [profile.cloud.tls]
            server_name = "localhost"
            server_ca_cert_path = "{authority.ca}"
            """,
        )
        clean_env.setenv("TEMPORAL_CONFIG_FILE", str(profiles))
        clean_env.setenv("TEMPORAL_PROFILE", "cloud")
        client = await TideflowClient.connect(audit=False, lineage=False)
        assert client.namespace == "acme.a1b2c"
    assert seen.metadata, "the frontend was not called"
    assert all(m.get("authorization") == "Bearer sekret-api-key" for m in seen.metadata)
    assert all(m.get("temporal-namespace", "acme.a1b2c") == "acme.a1b2c" for m in seen.metadata)


async def test_api_key_from_the_variables(clean_env: pytest.MonkeyPatch) -> None:
    with frontend(None) as (address, seen):
        clean_env.setenv("TEMPORAL_ADDRESS", address)
        clean_env.setenv("TEMPORAL_API_KEY", f"key-{uuid.uuid4().hex[:6]}")
        clean_env.setenv("TEMPORAL_TLS", "false")  # the stand-in speaks plain gRPC
        await TideflowClient.connect(audit=False, lineage=False)
        expected = f"Bearer {connect_config()['api_key']}"
    assert seen.metadata and all(m.get("authorization") == expected for m in seen.metadata)
