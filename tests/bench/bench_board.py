"""The pipeline board's first paint with BENCH_BOARD_DEALS (default 10,000) open deals, next to
the deal list at the same size (target: board / list <= 1.5x).

Database ``<database>_board``: one pipeline of four open stages and won and lost stages, the
open deals spread over them and a fifth as many closed ones, 2,000 companies, five owners in
one sales team. Generated in SQL once and reused. Both pages are requested through Django's
test client, as a superuser and as a sales rep whose team rule filters the deals; the best of
BENCH_REPEAT (default 5) runs after a warm-up is reported.

    BENCH_BOARD_DEALS=50000 python -m tests.bench bench_board
"""

from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tests.bench.bench_admin import bench_database, best_time, execute, scalar

DEALS = int(os.environ.get("BENCH_BOARD_DEALS", 10_000))
OPEN_STAGES = ["Lead", "Qualified", "Proposal", "Negotiation"]


@contextmanager
def board_database():
    with bench_database("board"):
        if scalar("SELECT count(*) FROM crm_deal WHERE status = 'open'") != DEALS:
            generate()
        yield


def generate() -> None:
    started = time.perf_counter()
    tables = ("crm_dealstagechange", "crm_deal", "crm_stage", "crm_pipeline", "crm_company")
    for table in (*tables, "crm_salesteam"):
        execute(f"TRUNCATE {table} CASCADE")
    execute("DELETE FROM auth_user WHERE username LIKE 'bench-%%'")
    User = get_user_model()
    owners = [
        User.objects.create_user(f"bench-rep-{n}", is_staff=True, first_name=f"Rep {n}")
        for n in range(5)
    ]
    from crm.models import Company, SalesTeam

    team = SalesTeam.objects.create(name="Bench team", visibility=SalesTeam.Visibility.TEAM)
    team.members.set(owners[:3])
    execute("INSERT INTO crm_pipeline (name, created_at) VALUES ('New business', now())")
    stages = [(name, order, False, False) for order, name in enumerate(OPEN_STAGES)]
    stages += [("Won", 8, True, False), ("Lost", 9, False, True)]
    for name, order, won, lost in stages:
        execute(
            'INSERT INTO crm_stage (pipeline_id, name, "order", probability, is_won, is_lost)'
            " SELECT id, %s, %s, 20, %s, %s FROM crm_pipeline",
            [name, order, won, lost],
        )
    Company.objects.bulk_create(
        Company(name=f"Company {n}", domain=f"company{n}.example") for n in range(2000)
    )
    owner_ids = [owner.pk for owner in owners]
    closed = DEALS // 5
    execute(
        """
        WITH stages AS (SELECT array_agg(id ORDER BY "order") FILTER (WHERE NOT is_won AND NOT
                               is_lost) AS open, min(id) FILTER (WHERE is_won) AS won,
                               min(id) FILTER (WHERE is_lost) AS lost, min(pipeline_id) AS p
                        FROM crm_stage),
             companies AS (SELECT min(id) AS first FROM crm_company)
        INSERT INTO crm_deal (name, pipeline_id, stage_id, company_id, amount, currency,
                              probability, expected_close_date, status, lost_reason, closed_at,
                              owner_id, stage_entered_at, custom_fields, created_at, updated_at)
        SELECT 'Deal ' || g, stages.p,
               CASE WHEN g <= %(open)s THEN stages.open[1 + g %% 4]
                    WHEN g %% 2 = 0 THEN stages.won ELSE stages.lost END,
               companies.first + g %% 2000, (g %% 900) * 100, 'EUR', 20,
               current_date + (g %% 180), CASE WHEN g <= %(open)s THEN 'open'
               WHEN g %% 2 = 0 THEN 'won' ELSE 'lost' END, '',
               CASE WHEN g > %(open)s THEN now() - (g %% 60) * interval '1 day' END,
               (%(owners)s::bigint[])[1 + g %% 5], now() - (g %% 90) * interval '1 day', '{}',
               now() - (g %% 200) * interval '1 day', now()
        FROM generate_series(1, %(total)s) g, stages, companies
        """,
        {"open": DEALS, "total": DEALS + closed, "owners": owner_ids},
    )
    execute("VACUUM ANALYZE")
    print(f"   generated {DEALS:,} open deals in {time.perf_counter() - started:.0f} s")


def logged_in(username: str, **flags) -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, **flags}
    )
    if not flags:
        from django.contrib.auth.models import Group

        user.groups.add(Group.objects.get(name="Sales"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def measure(client: Client) -> dict[str, tuple[float, int]]:
    def get(url: str):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    pipeline = scalar("SELECT id FROM crm_pipeline")
    return {
        "deal list, first page": best_time(
            lambda: get(f"/admin/crm/deal/?pipeline__id__exact={pipeline}")
        ),
        "board, first paint": best_time(lambda: get(f"/admin/crm/deal/board/?pipeline={pipeline}")),
    }


def run() -> None:
    with board_database():
        call_command("setup_roles", verbosity=0, stdout=io.StringIO())
        superuser = logged_in("bench", is_superuser=True)
        rep = logged_in("bench-rep-0")
        for who, client in (("superuser", superuser), ("sales rep in a team", rep)):
            figures = measure(client)
            base, _ = figures["deal list, first page"]
            print(f"   {DEALS:,} open deals, as a {who}:")
            for label, (seconds, queries) in figures.items():
                print(
                    f"     {label:<24} {seconds * 1000:8.1f} ms  {queries:3d} queries"
                    f"  {seconds / base:5.2f}x the deal list"
                )
