"""HTTP Basic auth: AccountSid:AuthToken, API key SK…:secret acting for the account, Twilio's 401/404."""

from __future__ import annotations

import httpx

from sandbox.testing import run_sandbox
from tests.sandbox.conftest import Api, assert_error, assert_page


def test_account_sid_and_token(api):
    assert api.send()["account_sid"] == api.sb.account_sid


def test_api_key_acts_for_the_account(clean_sandbox):
    client = Api(clean_sandbox, auth=(clean_sandbox.api_key_sid, clean_sandbox.api_key_secret))
    try:
        message = client.send()
        assert message["account_sid"] == clean_sandbox.account_sid
        assert client.get(message["sid"])["sid"] == message["sid"]
    finally:
        client.close()


def test_wrong_or_missing_credentials_get_401_20003(clean_sandbox):
    url = clean_sandbox.messages_url
    sb = clean_sandbox
    for auth in [
        (sb.account_sid, "wrong"),
        (sb.api_key_sid, sb.auth_token),  # a key with the account's token
        (sb.account_sid, sb.api_key_secret),
        ("AC" + "f" * 32, sb.auth_token),
    ]:
        body = assert_error(httpx.get(url, auth=auth, trust_env=False), 401, 20003)
        assert body["message"] == "Authenticate"
    assert_error(httpx.get(url, trust_env=False), 401, 20003)
    assert_error(httpx.get(url, headers={"Authorization": "Basic !!!"}, trust_env=False), 401, 20003)
    assert_error(
        httpx.post(url, data={"To": "+15551230000"}, auth=(sb.account_sid, "x"), trust_env=False), 401, 20003
    )
    assert sb.messages() == []
    assert sb.stats()["requests"]["unauthorized"] == 7


def test_secrets_never_appear_in_errors(clean_sandbox):
    response = httpx.get(
        clean_sandbox.messages_url, auth=(clean_sandbox.account_sid, "guess-123"), trust_env=False
    )
    assert "guess-123" not in response.text and clean_sandbox.auth_token not in response.text


def test_another_account_in_the_path_is_404_20404(clean_sandbox):
    other = "AC" + "e" * 32
    url = f"{clean_sandbox.base_url}/2010-04-01/Accounts/{other}/Messages.json"
    body = assert_error(
        httpx.get(url, auth=(clean_sandbox.account_sid, clean_sandbox.auth_token), trust_env=False),
        404,
        20404,
    )
    assert other in body["message"]


def test_custom_credentials_from_flags():
    sid = "AC" + "12" * 16
    with run_sandbox("--step-delay", "0", account_sid=sid, auth_token="tok-123") as sb:
        assert (sb.account_sid, sb.auth_token) == (sid, "tok-123")
        client = Api(sb)
        try:
            assert client.send()["account_sid"] == sid
            assert_page(client.list().json())
        finally:
            client.close()
        assert_error(
            httpx.get(sb.messages_url, auth=(sid, "sandbox-auth-token"), trust_env=False), 401, 20003
        )
