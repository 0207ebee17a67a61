"""Secret references (AWS Secrets Manager via moto, Vault KV v2 via a local fake) and
provider-config encryption at rest."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest

from app import secrets, security
from app.settings import SettingsError
from tests.fakes.aws import AWS_TEST_CONFIG, shared_moto_url

VAULT_TOKEN = "s.test-token"
VAULT_DATA = {"secret/data/notifications/twilio": {"auth_token": "tw-secret"}}


class _Vault(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the KV v2 read API
        path = self.path.removeprefix("/v1/")
        if self.headers.get("X-Vault-Token") != VAULT_TOKEN:
            self._send(403, {"errors": ["permission denied"]})
        elif path in VAULT_DATA:
            self._send(200, {"data": {"data": VAULT_DATA[path], "metadata": {"version": 1}}})
        else:
            self._send(404, {"errors": []})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def vault_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Vault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> str:
    url = shared_moto_url()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_TEST_CONFIG["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_TEST_CONFIG["secret_access_key"])
    return url


def test_aws_secretsmanager_references(aws_env: str, make_settings: Any) -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_env)
    client.create_secret(Name="prod/notifications/resend", SecretString="re_live_123")
    client.create_secret(Name="prod/twilio", SecretString=json.dumps({"token": "tw", "sid": "AC1"}))
    settings = make_settings(
        aws_endpoint_url=aws_env,
        email_api_key="aws:secretsmanager:prod/notifications/resend",
        sms_auth_token="aws:secretsmanager:prod/twilio#token",
    )
    resolved = secrets.resolve(settings)
    assert resolved.email_api_key == "re_live_123" and resolved.sms_auth_token == "tw"
    with pytest.raises(SettingsError, match="NOTIFICATIONS_EMAIL_API_KEY"):
        secrets.resolve(
            make_settings(aws_endpoint_url=aws_env, email_api_key="aws:secretsmanager:missing")
        )


def test_vault_references(vault_url: str, make_settings: Any) -> None:
    settings = make_settings(
        vault_addr=vault_url,
        vault_token=VAULT_TOKEN,
        sms_auth_token="vault:secret/data/notifications/twilio#auth_token",
    )
    assert secrets.resolve(settings).sms_auth_token == "tw-secret"
    bad = make_settings(
        vault_addr=vault_url,
        vault_token="wrong",
        sms_auth_token="vault:secret/data/notifications/twilio#auth_token",
    )
    with pytest.raises(SettingsError, match="NOTIFICATIONS_SMS_AUTH_TOKEN"):
        secrets.resolve(bad)


def test_config_encryption_round_trip_and_rotation() -> None:
    key, new_key = "k" * 32, "n" * 40
    sealed = security.encrypt_config({"api_key": "re_123"}, key)
    assert security.is_encrypted(sealed) and "re_123" not in json.dumps(sealed)
    assert security.decrypt_config(sealed, key) == {"api_key": "re_123"}
    with pytest.raises(security.ConfigDecryptionError):
        security.decrypt_config(sealed, new_key)
    rotated = security.rotate(sealed, key, new_key)
    assert security.decrypt_config(rotated, new_key) == {"api_key": "re_123"}
    assert security.decrypt_config({"plain": 1}, None) == {"plain": 1}
