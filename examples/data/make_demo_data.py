"""Regenerate the demo's sample files (seeded, small): ``python examples/data/make_demo_data.py``.

Writes a fixed-width stock report, an xls of stores, an xlsx of targets with title rows and a zip
of daily ``;``-separated returns parts with decimal commas, next to this script.
"""

from __future__ import annotations

import datetime as dt
import random
import zipfile
from pathlib import Path

import openpyxl
import xlwt

HERE = Path(__file__).resolve().parent
STORES = [(101, "Berlin", dt.date(2019, 3, 1)), (102, "Hamburg", dt.date(2020, 6, 15)),
          (204, "München", dt.date(2021, 1, 10)), (305, "Köln", dt.date(2022, 9, 1))]  # fmt: skip
PRODUCTS = ["coffee", "juice", "bagel", "cake", "tea"]


def stock(rng: random.Random) -> None:
    lines = ["SKU   PRODUCT     STORE  QTY   UNIT PRICE"]
    for number, product in enumerate(PRODUCTS, start=1):
        for store, _, _ in STORES:
            qty = rng.randint(0, 400)
            price = rng.randint(80, 900) / 100
            lines.append(f"S{number:04d} {product:<11} {store:<6} {qty:>4} {price:>11.2f}")
    (HERE / "stock").mkdir(exist_ok=True)
    (HERE / "stock" / "stock_2026-11-03.txt").write_text("\n".join(lines) + "\n")


def stores() -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Stores")
    date = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for col, name in enumerate(["Store No", "City", "Opened"]):
        sheet.write(0, col, name)
    for row, (store, city, opened) in enumerate(STORES, start=1):
        sheet.write(row, 0, store)
        sheet.write(row, 1, city)
        sheet.write(row, 2, opened, date)
    book.save(str(HERE / "stores.xls"))


def targets(rng: random.Random) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Targets"
    sheet["A1"] = "Monthly sales targets"
    sheet["A2"] = "Region: all stores, currency EUR"
    sheet.append([])
    sheet.append(["Store No", "Month", "Target"])
    for store, _, _ in STORES:
        sheet.append([store, dt.datetime(2026, 11, 1), rng.randint(20, 60) * 100])
    book.save(HERE / "targets_2026-11.xlsx")


def returns(rng: random.Random) -> None:
    with zipfile.ZipFile(HERE / "returns_2026-11.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for day in (1, 2, 3):
            lines = ["Receipt;Store No;Returned At;Refund"]
            for n in range(5):
                store = rng.choice(STORES)[0]
                refund = f"{rng.randint(100, 5000) / 100:.2f}".replace(".", ",")
                lines.append(f"RT{day}{n:02d};{store};2026-11-0{day} 1{n}:00:00;{refund}")
            archive.writestr(f"returns/2026-11-0{day}.csv", "\n".join(lines) + "\n")
        archive.writestr("__MACOSX/returns/._2026-11-01.csv", b"\x00\x05\x16\x07")


if __name__ == "__main__":
    seeded = random.Random(3)  # noqa: S311 - sample data, not secrets
    stock(seeded)
    stores()
    targets(seeded)
    returns(seeded)
