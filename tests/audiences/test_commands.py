import pytest
from django.core.management import CommandError, call_command

from audiences.models import Category

pytestmark = pytest.mark.django_db


def test_import_taxonomy_command(tmp_path, capsys):
    path = tmp_path / "taxonomy.csv"
    path.write_text("code,name,kind,parent_code,tier\nDEM,Demographic,demographic,,1\n")
    call_command("import_taxonomy", str(path))
    assert "1 created" in capsys.readouterr().out
    assert Category.objects.filter(code="DEM", tier=1).exists()


def test_import_taxonomy_command_reports_bad_rows(tmp_path, capsys):
    path = tmp_path / "taxonomy.csv"
    path.write_text("code,name,kind,parent_code,tier\nDEM,Demographic,colour,,1\n")
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_taxonomy", str(path))
    assert "line 2: kind 'colour'" in capsys.readouterr().err
    assert not Category.objects.exists()


def test_import_taxonomy_command_missing_file(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_taxonomy", str(tmp_path / "nope.csv"))
