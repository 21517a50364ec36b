from django.core.management.base import BaseCommand

from cdphub.roles import roles_sync


class Command(BaseCommand):
    help = "Create or update the role groups (Marketer, Sales, Privacy officer, ...)."

    def handle(self, *args, **options):
        for role, count in roles_sync().items():
            self.stdout.write(f"{role}: {count} permissions")
