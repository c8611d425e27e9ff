"""The redactor masks secrets in a line; pure, no database."""

from workers.redaction import MASK, Redactor, secret_values_from_environment

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
