import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from cdphub.roles import ROLES

# One demo user per role, so each role's view of the admin can be tried.
ROLE_USERS = {
    "marketer": "Marketer",
    "sales": "Sales",
    "salesmanager": "Sales manager",
    "privacy": "Privacy officer",
    "engineer": "Data engineer",
    "analyst": "Analyst",
}


class Command(BaseCommand):
    help = "Development only: create the admin superuser and one user per role, print the login."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("refusing to create development users with DJANGO_DEBUG=0")
        password = self.password()
        User = get_user_model()
        admin, _ = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        admin.set_password(password)
        admin.save()
        for username, role in ROLE_USERS.items():
            assert role in ROLES
            user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
        self.demo_team_ensure()
        self.stdout.write(self.style.SUCCESS("Admin login: http://127.0.0.1:8000/admin/"))
        self.stdout.write(f"  user: admin   password: {password}")
        self.stdout.write(f"  role users ({', '.join(ROLE_USERS)}) have the same password.")

    def demo_team_ensure(self) -> None:
        """The demo sales user works in a team (with two of the demo reps, led by the sales
        manager), so logging in as them shows what team visibility hides."""
        from cdphub.demo.crm import SALES_REPS
        from crm.models import SalesTeam

        User = get_user_model()
        team, _ = SalesTeam.objects.get_or_create(
            name="Demo team North", defaults={"visibility": SalesTeam.Visibility.TEAM}
        )
        team.manager = User.objects.get(username="salesmanager")
        team.save(update_fields=["manager", "updated_at"])
        members = User.objects.filter(username__in=["sales", *SALES_REPS[:2]])
        team.members.add(*members)

    def password(self) -> str:
        # Random on first run, kept under var/ so the printed login stays the same.
        path = settings.BASE_DIR / "var" / "dev-admin-password"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(12)
        path.write_text(password)
        path.chmod(0o600)
        return password
