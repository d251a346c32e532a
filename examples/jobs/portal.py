"""A stand-in for a supplier's reporting portal: serves one CSV report per day over HTTP.

    python3 examples/jobs/portal.py --port 8765

``GET /reports/YYYY-MM-DD.csv`` answers that day's sales report (the same bytes for the same day,
so re-running a day is harmless); one line in every report has a negative amount, which the
example pipeline's check quarantines. Dates in the future answer 404, like a report not yet
published. Standard library only.
"""

from __future__ import annotations

import argparse
import random
import re
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPORT_PATH = re.compile(r"^/reports/(\d{4}-\d{2}-\d{2})\.csv$")
STORES = ["Berlin Mitte", "Hamburg Altona", "Munich Schwabing", "Cologne Deutz"]
PRODUCTS = ["espresso", "flat white", "croissant", "bagel", "orange juice"]


def report(day: date) -> bytes:
    """The report of one day: deterministic, about 40 lines."""
    rng = random.Random(day.toordinal())  # noqa: S311 - demo data, not security
    lines = ["Day;Store;Product;Qty;Amount"]
    for _ in range(rng.randint(30, 50)):
        qty = rng.randint(1, 6)
        price = rng.choice([2.4, 3.1, 2.9, 3.6, 4.2])
        amount = f"{qty * price:.2f}".replace(".", ",")  # the portal speaks German decimals
        lines.append(f"{day};{rng.choice(STORES)};{rng.choice(PRODUCTS)};{qty};{amount}")
    lines.append(f"{day};{STORES[0]};refund;1;-3,10")  # a refund line the checks quarantine
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class Portal(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        match = REPORT_PATH.match(self.path)
        if not match:
            self._answer(404, b"not found\n", "text/plain")
            return
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            self._answer(400, b"bad date\n", "text/plain")
            return
        if day > date.today():
            self._answer(404, b"report not published yet\n", "text/plain")
            return
        self._answer(200, report(day), "text/csv; charset=utf-8")

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Portal)
    print(
        f"portal on http://{args.host}:{server.server_address[1]}/reports/<YYYY-MM-DD>.csv",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
