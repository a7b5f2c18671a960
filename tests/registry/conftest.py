"""Fixtures for the Feast registry smoke tests (tests/registry/run.sh).

Each registry kind needs a real server started by tests/scripts/*-up.sh
(tests/run.sh starts them in its "Feast registries" step). A missing
variable fails the tests that need it, with the command that sets it:
nothing is skipped.
"""

import os
import time

os.environ["TZ"] = "UTC"
time.tzset()

import pytest  # noqa: E402

# Variable -> the script whose output exports it.
SOURCES = {
    "HOS_POSTGRES_URL": "tests/scripts/postgres-up.sh",
    "HOS_S3_ENDPOINT": "tests/scripts/s3-up.sh",
    "AWS_ACCESS_KEY_ID": "tests/scripts/s3-up.sh",
    "AWS_SECRET_ACCESS_KEY": "tests/scripts/s3-up.sh",
    "AWS_DEFAULT_REGION": "tests/scripts/s3-up.sh",
    "HOS_GCS_ENDPOINT": "tests/scripts/gcs-up.sh",
    "STORAGE_EMULATOR_HOST": "tests/scripts/gcs-up.sh",
}


def require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(
            f"{name} is not set: run eval \"$({SOURCES[name]} STATE_DIR)\" first "
            f"(tests/run.sh does, in its 'Feast registries' step)",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def postgres_url():
    return require_env("HOS_POSTGRES_URL")


@pytest.fixture(scope="session")
def s3_endpoint():
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        require_env(name)
    return require_env("HOS_S3_ENDPOINT")


@pytest.fixture(scope="session")
def gcs_endpoint():
    require_env("STORAGE_EMULATOR_HOST")
    return require_env("HOS_GCS_ENDPOINT")
