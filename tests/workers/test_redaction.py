"""The redactor masks secrets in a line; pure, no database."""

import random
import string

from workers.redaction import (
    _TOKEN,
    MASK,
    Redactor,
    has_token,
    secret_values_from_environment,
)

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    redact = Redactor(["hunter2-pass", "s3cr3t-token-value"])
    line = "db password hunter2-pass and s3cr3t-token-value end"
    assert redact(line) == f"db password {MASK} and {MASK} end"


def test_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    redact = Redactor(["abcdefgh", "abcdefgh-ijkl"])
    assert redact("x abcdefgh-ijkl y") == f"x {MASK} y"


def test_aws_secret_access_key_is_masked_by_shape() -> None:
    assert Redactor()(f"key={AWS_SECRET}") == f"key={MASK}"
    assert AWS_SECRET not in Redactor()(f"export FOO {AWS_SECRET}")


def test_aws_access_key_id_is_masked() -> None:
    assert Redactor()("AKIAIOSFODNN7EXAMPLE used") == f"{MASK} used"


def test_git_sha_and_plain_text_are_left_alone() -> None:
    sha = "3f786850e387550fdab836ed7e6dc881de23001b"
    line = f"commit {sha} changed 3 resources"
    assert Redactor()(line) == line


def test_assigned_password_is_masked() -> None:
    assert Redactor()('password = "correct-horse"') == f'password = "{MASK}"'


def test_short_values_are_not_masked_by_value() -> None:
    assert Redactor(["true", "1"])("enabled: true 1") == "enabled: true 1"


def test_secret_environment_values_are_found_by_name() -> None:
    values = secret_values_from_environment(
        {"DB_PASSWORD": "pw-123456", "API_TOKEN": "tok-abcdef", "HOME": "/root"}
    )
    assert sorted(values) == ["pw-123456", "tok-abcdef"]


def test_with_secrets_adds_to_known_values() -> None:
    redact = Redactor(["first-secret"]).with_secrets(["second-secret"])
    assert redact("first-secret second-secret") == f"{MASK} {MASK}"


def test_credentials_are_masked_in_lines_joined_by_newlines() -> None:
    text = f"one\nkey {AWS_SECRET}\nid AKIAIOSFODNN7EXAMPLE\npassword: hunter2-long"
    assert Redactor()(text) == f"one\nkey {MASK}\nid {MASK}\npassword: {MASK}"


def test_a_40_character_token_of_one_case_is_not_a_secret_key() -> None:
    token = "abcdefghij" * 4
    assert Redactor()(f"x {token} y") == f"x {token} y"


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)


def test_each_line_of_a_multi_line_secret_is_masked_where_a_tool_prints_it_line_by_line() -> None:
    redact = Redactor([PEM])
    printed = "\n".join(f"terraform_data.app (local-exec): {line}" for line in PEM.splitlines())
    masked = redact(printed)
    for line in PEM.splitlines():
        assert line not in masked
    assert masked.count("terraform_data.app (local-exec): ") == 4


def test_a_private_key_block_is_masked_until_its_end_line_across_batches() -> None:
    redact = Redactor()  # not told about this key
    lines = [f"out: {line}" for line in PEM.splitlines()]
    first, second = redact("\n".join(lines[:2])), redact("\n".join([*lines[2:], "after: done"]))
    stored = first + "\n" + second
    assert "MIIEow" not in stored and "VTLw7o" not in stored
    assert "BEGIN RSA PRIVATE KEY" not in stored and "END RSA PRIVATE KEY" not in stored
    assert stored.endswith("after: done")
    assert redact("later: MIIEowIBAAKCAQEAu1SU1Lf") == "later: MIIEowIBAAKCAQEAu1SU1Lf"


def test_encoded_forms_of_a_known_secret_are_masked() -> None:
    import base64
    import json
    import urllib.parse

    secret = "p@ss w/rd+Ünïcode?&=x"
    redact = Redactor([secret])
    forms = [
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ]
    for form in forms:
        masked = redact(f"value: {form} end")
        assert masked.startswith(f"value: {MASK}") and masked.endswith(" end"), (form, masked)


def test_an_access_key_id_inside_a_sigv4_credential_is_masked() -> None:
    line = (
        "Authorization: AWS4-HMAC-SHA256 "
        "Credential=AKIAIOSFODNN7EXAMPLE/20261203/us-east-1/s3/aws4_request"
    )
    assert "AKIAIOSFODNN7EXAMPLE" not in Redactor()(line)
    assert "ASIAIOSFODNN7EXAMPLE" not in Redactor()("x ASIAIOSFODNN7EXAMPLE/2026 y")


def test_a_secret_key_inside_a_longer_path_is_masked() -> None:
    for text in (f"s3://bucket/{AWS_SECRET}/object", f"/tmp/x/{AWS_SECRET}", f"{AWS_SECRET}/tail"):
        masked = Redactor()(text)
        assert AWS_SECRET not in masked and MASK in masked, masked


def test_paths_without_credentials_are_left_alone() -> None:
    path = "/usr/local/lib/python3.11/site-packages/django/contrib/admin/templates/admin/x.html"
    assert Redactor()(f"reading {path}") == f"reading {path}"


def test_has_token_agrees_with_the_token_pattern_on_any_text() -> None:
    alphabet = string.ascii_letters + string.digits + "/+"
    others = ' .-_:é€\n"=,\U0001f600'
    chooser = random.Random(16)
    for _ in range(5000):
        text = "".join(
            chooser.choice(alphabet if chooser.random() < 0.9 else others)
            for _ in range(chooser.randint(0, 60))
        )
        assert has_token(text) == bool(_TOKEN.search(text)), text


def test_a_credential_at_the_end_of_a_very_large_batch_is_masked() -> None:
    # Past the size where has_token's copies are skipped, the scan itself still runs.
    text = "line of output\n" * 300_000 + "id AKIAIOSFODNN7EXAMPLE"
    assert Redactor()(text).endswith(f"id {MASK}")
