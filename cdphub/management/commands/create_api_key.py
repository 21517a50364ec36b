from django.core.management.base import BaseCommand, CommandError

from cdphub.api_auth import SCOPES
from cdphub.services import InvalidScope, api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scopes",
            nargs="+",
            required=True,
            metavar="SCOPE",
            help=f"One or more of: {', '.join(SCOPES)} (comma or space separated).",
        )

    def handle(self, *args, name, scopes, **options):
        requested = [s.strip() for item in scopes for s in item.split(",") if s.strip()]
        try:
            api_key, key = api_key_create(name=name, scopes=requested)
        except InvalidScope as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"API key {api_key.name!r} with scopes {', '.join(api_key.scopes)}:")
        self.stdout.write(key)
        self.stdout.write(
            "Store it now: it cannot be shown again. Send it as 'Authorization: Api-Key <key>'."
        )
