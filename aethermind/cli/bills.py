"""A provider's cost per UTC day and model, read from a file the provider gave (no network).

Two kinds of file, told apart by their content:
- the JSON its admin cost API answers, one page or a JSON list of pages: OpenAI
  ``GET /v1/organization/costs`` (daily buckets; with ``group_by=line_item`` each result's
  ``line_item`` is ``"<model>, <token kind>"``, without it one total per day; ``amount.value``
  in USD) and Anthropic ``GET /v1/organizations/cost_report`` (daily buckets; with
  ``group_by[]=description`` each result names its ``model``; ``amount`` a decimal string in
  cents; Priority Tier costs are not in it);
- the CSV its console exports, by header: OpenAI's usage page, Export, Cost data (the cost
  API's fields flattened: ``start_time`` in Unix seconds, ``amount_value``,
  ``amount_currency``, ``line_item``, ...), and Anthropic's Console cost page, Export
  (``usage_date_utc``, ``model`` as a display name such as ``Claude Sonnet 4.5``,
  ``token_type``, ``cost_usd`` in USD, ...).

Model names are spelled one way (:func:`spelled`) so a console's display name and an API's
model id meet.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from aethermind.cli.common import CliError

ALL_MODELS = "*"
"""The model of a provider line that names none (costs not grouped by model, tool fees)."""

Billed = dict[tuple[date, str], Decimal]

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


def spelled(model: str) -> str:
    """A model name lower-cased with every run of other characters one hyphen:
    ``Claude Sonnet 4.5`` and ``claude-sonnet-4-5`` are the same; empty is ``ALL_MODELS``."""
    return _NOT_NAME.sub("-", model.lower()).strip("-") or ALL_MODELS


def model_family(model: str) -> str:
    """:func:`spelled` without a dated or ``-latest`` snapshot suffix, to pair
    ``claude-sonnet-4-5-20250929`` (what a call reports) with ``claude-sonnet-4-5`` (a
    console's ``Claude Sonnet 4.5``)."""
    return _VERSION_SUFFIX.sub("", spelled(model))


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _OpenAIAmount(_Loose):
    value: Decimal
    currency: str = "usd"


class _OpenAIResult(_Loose):
    amount: _OpenAIAmount | None = None
    line_item: str | None = None


class _OpenAIBucket(_Loose):
    start_time: int
    results: list[_OpenAIResult]


class _OpenAIPage(_Loose):
    data: list[_OpenAIBucket]


class _AnthropicResult(_Loose):
    amount: Decimal
    currency: str = "USD"
    model: str | None = None


class _AnthropicBucket(_Loose):
    starting_at: datetime
    results: list[_AnthropicResult]


class _AnthropicPage(_Loose):
    data: list[_AnthropicBucket]


Line = tuple[date, str, Decimal, str]
"""One cost line: UTC day, model (as the file spells it), amount in USD, currency."""


def read_bill(provider: str, path: Path) -> Billed:
    """The provider's cost per (UTC day, spelled model) from a saved cost report."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--file {path}: cannot read it: {exc}") from exc
    lines = _json_lines(provider, path, text) if text.lstrip()[:1] in ("{", "[") else (
        _csv_lines(provider, path, text))  # fmt: skip
    billed: Billed = defaultdict(Decimal)
    for day, model, amount, currency in lines:
        if currency.lower() != "usd":
            raise CliError(f"--file {path}: only USD cost reports are reconciled, got {currency!r}")
        billed[day, spelled(model)] += amount
    return dict(billed)


def _json_lines(provider: str, path: Path, text: str) -> list[Line]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--file {path}: cannot read JSON: {exc}") from exc
    pages = document if isinstance(document, list) else [document]
    read_page = _openai_page if provider == "openai" else _anthropic_page
    try:
        return [line for page in pages for line in read_page(page)]
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise CliError(
            f"--file {path}: not an {provider} cost report: {where}: {problem['msg']}"
        ) from exc
    except (OverflowError, OSError, ValueError) as exc:  # a bucket time beyond the calendar
        raise CliError(f"--file {path}: a bucket's time is out of range: {exc}") from exc


def _openai_page(document: object) -> Iterable[Line]:
    page = _OpenAIPage.model_validate(document)
    for bucket in page.data:
        day = datetime.fromtimestamp(bucket.start_time, UTC).date()
        for result in bucket.results:
            if result.amount is not None:
                model = _line_item_model(result.line_item)
                yield day, model, result.amount.value, result.amount.currency


def _anthropic_page(document: object) -> Iterable[Line]:
    page = _AnthropicPage.model_validate(document)
    for bucket in page.data:
        day = bucket.starting_at.astimezone(UTC).date()
        for result in bucket.results:
            yield day, result.model or "", result.amount / 100, result.currency  # cents


def _line_item_model(line_item: str | None) -> str:
    """OpenAI's line item is ``"<model>, <token kind>"``; the model is before the comma."""
    return (line_item or "").split(",")[0]


Row = dict[str, str]
RowReader = Callable[[Row], Line | None]


def _cell(row: Row, column: str) -> str:
    return (row.get(column) or "").strip()


def _openai_csv_row(row: Row) -> Line | None:
    if not _cell(row, "amount_value"):
        return None  # a day the export lists without costs
    started = _cell(row, "start_time")
    day = (
        datetime.fromtimestamp(int(started), UTC).date() if started.isdigit()
        else _day(started, "start_time")
    )  # fmt: skip
    amount = _decimal(_cell(row, "amount_value"), "amount_value")
    return day, _line_item_model(row.get("line_item")), amount, row.get("amount_currency") or "usd"


def _console_csv_row(row: Row) -> Line | None:
    day = _day(_cell(row, "usage_date_utc"), "usage_date_utc")
    return day, _cell(row, "model"), _decimal(_cell(row, "cost_usd"), "cost_usd"), "usd"


_CSV_LAYOUTS: dict[str, tuple[tuple[str, ...], RowReader]] = {
    "OpenAI's cost export": (("start_time", "amount_value"), _openai_csv_row),
    "a console cost export": (("usage_date_utc", "cost_usd"), _console_csv_row),
}
"""Each CSV layout read: the columns it must have, and how one of its rows reads."""


def _csv_lines(provider: str, path: Path, text: str) -> list[Line]:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    layout = next(
        (read for required, read in _CSV_LAYOUTS.values() if set(required) <= set(header)), None
    )
    if layout is None:
        expected = "; ".join(
            f"{name}: {', '.join(required)}" for name, (required, _) in _CSV_LAYOUTS.items()
        )
        raise CliError(
            f"--file {path}: not an {provider} cost report: a CSV needs the columns of one of"
            f" ({expected}); its header has {', '.join(header) or 'nothing'}"
        )

    lines = []
    for number, row in enumerate(reader, start=2):
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        try:
            line = layout(row)
        except (ValueError, OverflowError, OSError) as exc:
            raise CliError(f"--file {path}: line {number}: {exc}") from exc
        if line is not None:
            lines.append(line)
    return lines


def _day(value: str, column: str) -> date:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a date") from None
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _decimal(value: str, column: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{column} {value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{column} {value!r} is not a number")
    return amount
