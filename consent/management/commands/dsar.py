from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from consent.dsar import DsarError, dsar_create, dsar_process, dsar_verify
from consent.models import DataSubjectRequest


class Command(BaseCommand):
    help = (
        "Create, verify and run a data subject request at once (for operators and scripts); "
        "prints the request id and its result file."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=DataSubjectRequest.Kind.values)
        parser.add_argument("--email", default="")
        parser.add_argument("--phone", default="")
        parser.add_argument("--user-id", default="")
        parser.add_argument("--details", default="", help="What the person asked.")
        parser.add_argument(
            "--correct",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Rectification: a corrected trait (repeatable), e.g. --correct lastName=Jansen",
        )

    def handle(self, *args, **options):
        if not (options["email"] or options["phone"] or options["user_id"]):
            raise CommandError("give --email, --phone or --user-id to identify the person")
        corrections = {}
        for item in options["correct"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--correct {item!r}: expected KEY=VALUE")
            corrections[key] = value
        label = "manage.py dsar"
        try:
            request = dsar_create(
                kind=options["kind"],
                email=options["email"],
                phone=options["phone"],
                user_id=options["user_id"],
                details=options["details"],
                corrections=corrections or None,
                label=label,
            )
            dsar_verify(request=request, note="verified by the operator running manage.py dsar")
            request = dsar_process(request=request)
        except DsarError as error:
            raise CommandError(f"{error.field}: {error.message}") from None
        self.stdout.write(f"request {request.pk}: {request.kind} {request.status}")
        self.stdout.write(
            f"result file: {request.result_file.path if request.result_file else '-'}"
        )
