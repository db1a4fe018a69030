"""Settings: read once, validated, with messages that name the variable and never a secret."""

import ast
import logging
from datetime import date
from pathlib import Path

import pytest

from ecom_assets.defs.ecom import build_definitions
from ecom_assets.defs.resources import build_resources
from ecom_assets.settings import SETTINGS, SettingsError, read_settings

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "ecom_assets"


def test_every_setting_has_a_default_or_is_required_and_parses_its_default() -> None:
    settings = read_settings({})

    assert settings.api_base_url is None
    assert settings.destination == "duckdb"
    assert settings.partitions_start == date(2026, 1, 1)
    assert settings.sensor_interval_seconds == 60
    assert settings.secrets == frozenset()
    for setting in SETTINGS:
        assert setting.description.endswith(".")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ECOM_PARTITIONS_START", "2026-13-01",
         "ECOM_PARTITIONS_START must be a day as YYYY-MM-DD, e.g. 2026-01-01; got '2026-13-01'"),
        ("ECOM_SENSOR_INTERVAL_SECONDS", "30s",
         "ECOM_SENSOR_INTERVAL_SECONDS must be a whole number from 1 to 86400; got '30s'"),
        ("ECOM_API_BASE_URL", "ftp://vendor.example.com",
         "ECOM_API_BASE_URL must be an http:// or https:// URL with a host, e.g. "
         "https://api.example.com; got 'ftp://vendor.example.com'"),
        ("ECOM_DUCKDB_PATH", "data/ecom.duckdb",
         "ECOM_DUCKDB_PATH must be a file not named ecom.duckdb"),
        ("ECOM_FULL_REFRESH_MAX_REMOVED_SHARE", "50%",
         "ECOM_FULL_REFRESH_MAX_REMOVED_SHARE must be a share between 0 and 1, e.g. 0.5; "
         "got '50%'"),
        ("ECOM_DUCKDB_LOCK_WAIT_SECONDS", "nan",
         "ECOM_DUCKDB_LOCK_WAIT_SECONDS must be a number of seconds, 0 or more; got 'nan'"),
        ("ECOM_MAX_RETRY_AFTER_SECONDS", "inf",
         "ECOM_MAX_RETRY_AFTER_SECONDS must be a number of seconds, 0 or more; got 'inf'"),
        # A request given no time fails with a message that would not name the setting.
        ("ECOM_REQUEST_TIMEOUT_SECONDS", "0",
         "ECOM_REQUEST_TIMEOUT_SECONDS must be a number of seconds, more than 0; got '0'"),
        ("ECOM_PAGE_CONCURRENCY", "\u00b2",  # a digit to str.isdigit, not to int()
         "ECOM_PAGE_CONCURRENCY must be a whole number from 1 to 64; got '\u00b2'"),
        ("ECOM_PAGE_CONCURRENCY", "100000",
         "ECOM_PAGE_CONCURRENCY must be a whole number from 1 to 64; got '100000'"),
        # ISO 8601's basic form, which date.fromisoformat also reads.
        ("ECOM_PARTITIONS_START", "20260101",
         "ECOM_PARTITIONS_START must be a day as YYYY-MM-DD, e.g. 2026-01-01; got '20260101'"),
        ("ECOM_API_BASE_URL", "http://vendor.example.com:99999",
         "ECOM_API_BASE_URL must be an http:// or https:// URL with a host, e.g. "
         "https://api.example.com, its port (if any) a number from 1 to 65535; "
         "got 'http://vendor.example.com:99999'"),
        # dlt would fail at the first run, naming its own module rather than the setting.
        ("ECOM_DESTINATION", "Postgres",
         "ECOM_DESTINATION must be one of dlt's destinations by its module name, e.g. duckdb "
         "or postgres; got 'Postgres'"),
        # Joined to resource paths, even an empty query would end up in the middle.
        ("ECOM_API_BASE_URL", "https://api.example.com/?",
         "ECOM_API_BASE_URL must be an http:// or https:// URL with a host, e.g. "
         "https://api.example.com, without a query or fragment; got "
         "'https://api.example.com/?'"),
        # More digits than int() reads (4,300) would fail with int()'s own message.
        ("ECOM_SENSOR_INTERVAL_SECONDS", "9" * 5000,
         "ECOM_SENSOR_INTERVAL_SECONDS must be a whole number from 1 to 86400; got '999"),
        # A name configured in dlt's providers would hide the destination's kind.
        ("ECOM_DESTINATION", "warehouse",
         "ECOM_DESTINATION must be one of dlt's destinations by its module name, e.g. duckdb "
         "or postgres; got 'warehouse'"),
        ("ECOM_API_BASE_URL", "http://[::1",
         "ECOM_API_BASE_URL must be an http:// or https:// URL with a host, e.g. "
         "https://api.example.com; got 'http://[::1'"),
        ("ECOM_API_BASE_URL", "https://api.example.com/?shop=7",
         "ECOM_API_BASE_URL must be an http:// or https:// URL with a host, e.g. "
         "https://api.example.com, without a query or fragment; got "
         "'https://api.example.com/?shop=7'"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_the_expected_form(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        read_settings({variable: value})

    assert str(error.value).startswith(message)


def test_a_base_url_holding_a_password_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError) as error:
        read_settings({"ECOM_API_BASE_URL": "https://shop:s3cret-77@api.example.com"})

    assert str(error.value).startswith("ECOM_API_BASE_URL must be an http:// or https:// URL")
    assert "without a user or password (the key: ECOM_API_KEY)" in str(error.value)
    assert "s3cret-77" not in str(error.value)


def test_runs_use_the_validated_base_url() -> None:
    settings = read_settings({"ECOM_API_BASE_URL": " https://api.example.com/v2/ "})

    assert build_resources(settings)["vendor_api"].base_url == "https://api.example.com/v2"


def test_a_database_url_with_an_unescaped_at_is_refused_without_showing_the_password() -> None:
    url = "postgresql://loader:s3cr@t-pass@db.example.com:5432/warehouse"

    with pytest.raises(SettingsError) as error:
        read_settings({"DESTINATION__POSTGRES__CREDENTIALS": url})

    assert "DESTINATION__POSTGRES__CREDENTIALS must be a URL whose password" in str(error.value)
    for part in ("s3cr", "t-pass", "db.example.com"):
        assert part not in str(error.value)


def test_the_key_and_the_database_password_are_the_secrets_to_scrub() -> None:
    settings = read_settings({
        "ECOM_API_KEY": "key-123",
        "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://u:p%40ss@db:5432/w",
    })

    assert settings.secrets == {"key-123", "p%40ss", "p@ss"}
    assert "key-123" not in repr(settings) and "p@ss" not in repr(settings)


def test_a_code_location_scrubs_the_database_password_from_dlts_log(caplog) -> None:
    password = "pw-7c1e9a"
    build_definitions(settings=read_settings({
        "ECOM_API_KEY": "key-123",
        "DESTINATION__POSTGRES__CREDENTIALS": f"postgresql://u:{password}@db:5432/w",
    }))

    logging.getLogger("dlt").warning("connecting to postgresql://u:%s@db:5432/w", password)

    assert "connecting to postgresql://u:***@db:5432/w" in caplog.text
    assert password not in caplog.text


def test_only_the_settings_module_reads_the_environment() -> None:
    # The sandbox is the vendor's stand-in, configured by its own command line.
    exempt = {PACKAGE / "settings.py", *(PACKAGE / "sandbox").rglob("*.py")}
    readers = []
    for path in sorted(set(PACKAGE.rglob("*.py")) - exempt):
        for node in ast.walk(ast.parse(path.read_text())):
            reads = isinstance(node, ast.Call) or (
                isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
            )
            text = ast.unparse(node) if reads else ""
            if text.startswith(("os.getenv(", "os.environ.get(", "os.environ[", "getenv(",
                                "dlt.config[", "dlt.secrets[", "dlt.config.get(",
                                "dlt.secrets.get(")):
                readers.append(f"{path.relative_to(PACKAGE.parent)}: {text}")
    assert readers == []
