"""Production settings refuse insecure defaults; run in subprocesses so settings load fresh."""

import os
import subprocess
import sys

from django.conf import settings

STRONG_KEY = "k" * 20 + "Zx9!q" * 10


def run_django(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests in this process
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = run_django(
        "check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="cdp.example.com"
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_secret_key():
    result = run_django(
        "check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY="short", DJANGO_ALLOWED_HOSTS="cdp.example.com"
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = run_django(
        "check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS=""
    )
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must be set" in result.stderr


def test_deploy_check_is_clean_with_production_settings():
    result = run_django(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_ALLOWED_HOSTS="cdp.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_development_defaults_are_local_only():
    result = run_django(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG, settings.ALLOWED_HOSTS)",
        DJANGO_DEBUG="",
        DJANGO_ALLOWED_HOSTS="",
    )
    assert result.returncode == 0, result.stderr
    assert "True ['localhost', '127.0.0.1', '[::1]']" in result.stdout


def test_every_setting_read_from_the_environment_is_in_env_example_and_the_readme():
    """The two lists people read to configure cdphub cannot forget a setting."""
    import re
    from pathlib import Path

    from django.conf import settings as django_settings

    base = Path(django_settings.BASE_DIR)
    source = (base / "cdphub" / "settings.py").read_text()
    names = set(re.findall(r'env(?:_int|_bool|_list)?\(\s*"([A-Z0-9_]+)"', source))
    example = (base / ".env.example").read_text()
    readme = (base / "README.md").read_text()
    assert len(names) > 30
    assert sorted(n for n in names if not re.search(rf"^{n}=", example, re.MULTILINE)) == []
    assert sorted(n for n in names if f"`{n}`" not in readme) == []
