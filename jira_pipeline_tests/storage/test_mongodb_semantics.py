"""An oracle for the store that does not come from the store: what MongoDB's manual documents.

Each case is a pymongo operation this project sends (bulk upserts with version guards, windows
on `updated`, `$in`/`$nin`, projections, counts, unique indexes, ...) with the answer the cited
manual page gives for it. The cases and their data are written here, from the manual's prose;
none is taken from MongoDB's own specification tests. They run against the embedded store, and
against a real server when MONGODB_TEST_URI is set (see conftest.py). Query cases run twice on
the embedded store, with and without an index on the fields they filter, because an index
changes its read path (embedded_index.py plans candidates from it).

Where the embedded store answers differently and our code does not rely on the case, the case
carries `known_difference` (the reason): it is then a strict xfail on the embedded store only,
so a fix shows up as an unexpected pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from jira_pipeline_tests.storage.conftest import Store

MANUAL = "https://www.mongodb.com/docs/manual"
NULL_FIELDS = f"{MANUAL}/tutorial/query-for-null-fields/"
EXISTS = f"{MANUAL}/reference/operator/query/exists/"
NE = f"{MANUAL}/reference/operator/query/ne/"
IN = f"{MANUAL}/reference/operator/query/in/"
NIN = f"{MANUAL}/reference/operator/query/nin/"
OR = f"{MANUAL}/reference/operator/query/or/"
GT = f"{MANUAL}/reference/operator/query/gt/"
GTE = f"{MANUAL}/reference/operator/query/gte/"
LT = f"{MANUAL}/reference/operator/query/lt/"
LTE = f"{MANUAL}/reference/operator/query/lte/"
BRACKETING = f"{MANUAL}/reference/mql/query-predicates/type-bracketing/"
COMPARISON_ORDER = f"{MANUAL}/reference/bson-type-comparison-order/"
BSON_DATE = f"{MANUAL}/reference/bson-types/#date"
ARRAYS = f"{MANUAL}/tutorial/query-arrays/"
ELEM_MATCH = f"{MANUAL}/reference/operator/query/elemMatch/"
ALL = f"{MANUAL}/reference/operator/query/all/"
EMBEDDED = f"{MANUAL}/tutorial/query-embedded-documents/"
PROJECTION = f"{MANUAL}/tutorial/project-fields-from-query-results/"
COUNT = f"{MANUAL}/reference/method/db.collection.countDocuments/"
DISTINCT = f"{MANUAL}/reference/command/distinct/"
UNIQUE = f"{MANUAL}/core/index-unique/"
BULK_WRITE = f"{MANUAL}/reference/method/db.collection.bulkWrite/"
UPDATE_ONE = f"{MANUAL}/reference/method/db.collection.updateOne/"
UPSERT_DUPLICATES = f"{UPDATE_ONE}#upsert-with-duplicate-values"
SET_ON_INSERT = f"{MANUAL}/reference/operator/update/setOnInsert/"
UPDATE_MANY = f"{MANUAL}/reference/method/db.collection.updateMany/"
REPLACE_ONE = f"{MANUAL}/reference/method/db.collection.replaceOne/"
SORT = f"{MANUAL}/reference/method/cursor.sort/"

DAY = datetime(2026, 1, 5, tzinfo=UTC)
MS = timedelta(milliseconds=1)
T = datetime(2026, 1, 10, 9, 30, 15, 250_000, tzinfo=UTC)
U1, U2, U3, U_ABSENT = (uuid.UUID(int=n) for n in (1, 2, 3, 99))


@dataclass(frozen=True)
class Case:
    """One documented behaviour: `run` on a collection holding `documents` gives `expected`."""

    name: str
    manual: str  # the manual page that documents the answer
    documents: list[dict[str, Any]]
    run: Callable[[Collection], Any]
    expected: Any
    indexes: list[IndexModel] = field(default_factory=list)  # created before the documents
    indexed_on: tuple[str, ...] = ()  # query cases: also run with an index on each of these
    known_difference: str | None = None  # why the embedded store answers differently


def ids(filter: dict[str, Any]) -> Callable[[Collection], list[Any]]:
    """The sorted `_id`s `find(filter)` returns (order is not what these cases are about)."""
    return lambda collection: sorted(doc["_id"] for doc in collection.find(filter))


def found(
    filter: dict[str, Any], projection: Any = None, sort: str = "_id"
) -> Callable[[Collection], list[dict[str, Any]]]:
    return lambda collection: list(collection.find(filter, projection).sort(sort, ASCENDING))


def error_of(operation: Callable[[Collection], Any]) -> Callable[[Collection], Any]:
    """(exception name, code, documents stored afterwards) of an operation that should fail."""

    def run(collection: Collection) -> Any:
        try:
            operation(collection)
        except DuplicateKeyError as error:
            return ("DuplicateKeyError", error.code, collection.count_documents({}))
        return ("no error", None, collection.count_documents({}))

    return run


def bulk_outcome(requests: list[Any], *, ordered: bool) -> Callable[[Collection], Any]:
    """(inserted, [(index, code) of each write error], sorted _ids stored) of a bulk write."""

    def run(collection: Collection) -> Any:
        try:
            result = collection.bulk_write(requests, ordered=ordered)
            inserted, errors = result.inserted_count, []
        except BulkWriteError as error:
            inserted = error.details["nInserted"]
            errors = [(e["index"], e["code"]) for e in error.details["writeErrors"]]
        return inserted, errors, sorted(doc["_id"] for doc in collection.find({}))

    return run


def then(
    operation: Callable[[Collection], Any], read: Callable[[Collection], Any]
) -> Callable[[Collection], Any]:
    """`operation`'s summary (see `summary`) and then what `read` finds."""

    def run(collection: Collection) -> Any:
        return summary(operation(collection)), read(collection)

    return run


def _one(collection: Collection, _id: Any) -> dict[str, Any]:
    document = collection.find_one({"_id": _id})
    assert document is not None, f"no document {_id!r}"
    return document


def summary(result: Any) -> Any:
    counts = {}
    for name in ("matched_count", "modified_count", "upserted_id", "inserted_count"):
        if hasattr(result, name):
            counts[name] = getattr(result, name)
    return counts or result


# --- data written for these cases ---------------------------------------------------------------

NULLS: list[dict[str, Any]] = [
    {"_id": "null", "v": None},
    {"_id": "missing"},
    {"_id": "zero", "v": 0},
    {"_id": "empty", "v": ""},
    {"_id": "false", "v": False},
    {"_id": "true", "v": True},
]
MIXED: list[dict[str, Any]] = [
    {"_id": "int", "q": 5},
    {"_id": "float", "q": 7.5},
    {"_id": "small", "q": 3},
    {"_id": "text", "q": "fourteen"},
    {"_id": "object", "q": {"in_stock": 8}},
    {"_id": "date", "q": T},
    {"_id": "null", "q": None},
    {"_id": "missing"},
    {"_id": "bool", "q": True},
]
WINDOW: list[dict[str, Any]] = [  # issues around the midnights bounding the partition 2026-01-05
    {"_id": "before", "updated": DAY - MS, "connection_id": "c1", "project_key": "A"},
    {"_id": "start", "updated": DAY, "connection_id": "c1", "project_key": "A"},
    {"_id": "mid", "updated": DAY + timedelta(hours=12), "connection_id": "c1", "project_key": "B"},
    {"_id": "end", "updated": DAY + timedelta(days=1) - MS, "connection_id": "c2",
     "project_key": "A"},
    {"_id": "next", "updated": DAY + timedelta(days=1), "connection_id": "c1", "project_key": "A"},
    {"_id": "text", "updated": "2026-01-05T12:00:00.000+0000", "connection_id": "c1",
     "project_key": "A"},
    {"_id": "no-updated", "connection_id": "c1", "project_key": "A"},
]
VERSIONS: list[dict[str, Any]] = [
    {"_id": "older", "updated": T - timedelta(minutes=1)},
    {"_id": "same", "updated": T},
    {"_id": "newer", "updated": T + MS},
    {"_id": "null", "updated": None},
    {"_id": "missing"},
    {"_id": "text", "updated": "2026-01-10T09:30:15.250+0000"},
]
LABELLED: list[dict[str, Any]] = [
    {"_id": "a", "labels": ["backend", "urgent"], "points": [3, 8]},
    {"_id": "b", "labels": ["urgent", "backend"], "points": [1, 2]},
    {"_id": "c", "labels": ["backend", "urgent", "ui"], "points": [13]},
    {"_id": "d", "labels": ["ui"], "points": [5, 30]},
    {"_id": "e", "labels": []},
    {"_id": "f", "labels": "urgent", "points": 6},
    {"_id": "g"},
]
# Arrays of dates: no element inside a window, yet one above and one below it.
SPANS: list[dict[str, Any]] = [
    {"_id": "around", "seen": [DAY - timedelta(days=10), DAY + timedelta(days=10)]},
    {"_id": "inside", "seen": [DAY + timedelta(hours=1)]},
    {"_id": "all-before", "seen": [DAY - timedelta(days=10), DAY - timedelta(days=9)]},
    {"_id": "scalar", "seen": DAY + timedelta(hours=2)},
]
ISSUES: list[dict[str, Any]] = [
    {"_id": "p1", "key": "A-1", "status": "Done", "labels": ["x"],
     "raw": {"fields": {"summary": "Crash", "updated": "2026-01-05"}}},
    {"_id": "p2", "key": "A-2"},
]
DELETABLE: list[dict[str, Any]] = [
    {"_id": "live", "is_deleted": False},
    {"_id": "gone", "is_deleted": True},
    {"_id": "unset", "is_deleted": None},
    {"_id": "legacy"},
]
UUIDS: list[dict[str, Any]] = [{"_id": U1, "n": 1}, {"_id": U2, "n": 2}, {"_id": U3, "n": 3}]
ISSUE_KEY = [
    IndexModel([("connection_id", ASCENDING), ("issue_id", ASCENDING)], unique=True,
               name="connection_issue_unique"),
]


BOOLEANS_ARE_NUMBERS = (
    "mongomock matches equality with Python's ==, where True == 1 and False == 0, so a boolean "
    "and a number are equal; our code writes and compares booleans only in fields that hold "
    "booleans (is_deleted, active), never against numbers"
)


def _guard(version: Any) -> dict[str, Any]:
    # Exactly the selector storage/upserts.py `_version_guard` builds.
    return {"$or": [{"updated": {"$lte": version}}, {"updated": None}]}


CASES: list[Case] = [
    # -- null and missing fields ---------------------------------------------------------------
    Case("equality_with_null_matches_null_and_missing", NULL_FIELDS, NULLS,
         ids({"v": None}), ["missing", "null"], indexed_on=("v",)),
    Case("exists_false_matches_only_missing", EXISTS, NULLS,
         ids({"v": {"$exists": False}}), ["missing"], indexed_on=("v",)),
    Case("exists_true_matches_null_too", EXISTS, NULLS,
         ids({"v": {"$exists": True}}), ["empty", "false", "null", "true", "zero"]),
    Case("ne_null_excludes_null_and_missing", NE, NULLS,
         ids({"v": {"$ne": None}}), ["empty", "false", "true", "zero"], indexed_on=("v",)),
    Case("ne_true_matches_false_null_and_missing", NE, DELETABLE,
         ids({"is_deleted": {"$ne": True}}), ["legacy", "live", "unset"],
         indexed_on=("is_deleted",)),
    Case("in_null_matches_null_and_missing", IN, NULLS,
         ids({"v": {"$in": [None, 0]}}), ["missing", "null", "zero"], indexed_on=("v",),
         known_difference=BOOLEANS_ARE_NUMBERS),
    Case("nin_null_and_empty_keeps_other_falsy_values", NIN, NULLS,
         ids({"v": {"$nin": [None, ""]}}), ["false", "true", "zero"], indexed_on=("v",)),
    Case("false_and_zero_are_different_values", COMPARISON_ORDER, NULLS,
         ids({"v": False}), ["false"], indexed_on=("v",),
         known_difference=BOOLEANS_ARE_NUMBERS),
    # -- the version guard of a guarded upsert -------------------------------------------------
    Case("version_guard_selects_older_equal_null_and_missing", OR, VERSIONS,
         ids(_guard(T)), ["missing", "null", "older", "same"], indexed_on=("updated",)),
    Case("version_guard_with_a_string_version_matches_only_strings_and_nulls", BRACKETING,
         VERSIONS, ids(_guard("2026-01-10T09:30:15.250+0000")), ["missing", "null", "text"]),
    # -- comparisons and type bracketing -------------------------------------------------------
    Case("gt_a_number_matches_only_numbers", BRACKETING, MIXED,
         ids({"q": {"$gt": 4}}), ["float", "int"], indexed_on=("q",)),
    Case("lt_a_number_ignores_null_bool_text_and_dates", LT, MIXED,
         ids({"q": {"$lt": 100}}), ["float", "int", "small"], indexed_on=("q",)),
    Case("gte_a_string_matches_only_strings", BRACKETING, MIXED,
         ids({"q": {"$gte": ""}}), ["text"], indexed_on=("q",)),
    Case("lt_a_date_matches_only_dates", BRACKETING, MIXED,
         ids({"q": {"$lt": T + timedelta(days=1)}}), ["date"], indexed_on=("q",)),
    Case("ne_uses_no_type_bracketing", BRACKETING, MIXED,
         ids({"q": {"$ne": 5}}),
         ["bool", "date", "float", "missing", "null", "object", "small", "text"],
         indexed_on=("q",)),
    Case("an_integer_equals_the_same_double", BRACKETING, MIXED,
         ids({"q": 5.0}), ["int"], indexed_on=("q",)),
    Case("in_mixes_types", IN, MIXED,
         ids({"q": {"$in": [5, "fourteen"]}}), ["int", "text"], indexed_on=("q",)),
    Case("nin_matches_every_other_type_and_missing", NIN, MIXED,
         ids({"q": {"$nin": [5, "fourteen"]}}),
         ["bool", "date", "float", "missing", "null", "object", "small"], indexed_on=("q",)),
    Case("true_is_not_the_number_one", COMPARISON_ORDER, [*MIXED, {"_id": "one", "q": 1}],
         ids({"q": 1}), ["one"], indexed_on=("q",), known_difference=BOOLEANS_ARE_NUMBERS),
    # -- partition windows on `updated` --------------------------------------------------------
    Case("a_day_window_includes_midnight_and_excludes_the_next", GTE, WINDOW,
         ids({"updated": {"$gte": DAY, "$lt": DAY + timedelta(days=1)}}),
         ["end", "mid", "start"], indexed_on=("updated",)),
    Case("gt_a_date_is_strict_to_the_millisecond", GT, WINDOW,
         ids({"updated": {"$gt": DAY}}), ["end", "mid", "next"], indexed_on=("updated",)),
    Case("lte_a_date_includes_it", LTE, WINDOW,
         ids({"updated": {"$lte": DAY - MS}}), ["before"], indexed_on=("updated",)),
    Case("a_window_of_one_connection_and_project", GTE, WINDOW,
         ids({"connection_id": "c1", "project_key": "A",
              "updated": {"$gte": DAY, "$lt": DAY + timedelta(days=1)}}),
         ["start"], indexed_on=("connection_id", "project_key", "updated")),
    Case("a_window_counts_like_it_finds", COUNT, WINDOW,
         lambda c: c.count_documents({"updated": {"$gte": DAY, "$lt": DAY + timedelta(days=1)}}),
         3, indexed_on=("updated",)),
    Case("a_date_range_matches_an_array_across_its_elements", ARRAYS, SPANS,
         ids({"seen": {"$gte": DAY, "$lt": DAY + timedelta(days=1)}}),
         ["around", "inside", "scalar"], indexed_on=("seen",)),
    Case("elem_match_needs_one_element_inside_the_range", ELEM_MATCH, SPANS,
         ids({"seen": {"$elemMatch": {"$gte": DAY, "$lt": DAY + timedelta(days=1)}}}),
         ["inside"], indexed_on=("seen",)),
    Case("dates_keep_milliseconds_and_drop_microseconds", BSON_DATE,
         [{"_id": "t", "at": datetime(2026, 1, 5, 1, 2, 3, 456_789, tzinfo=UTC)}],
         lambda c: _one(c, "t")["at"],
         datetime(2026, 1, 5, 1, 2, 3, 456_000, tzinfo=UTC)),
    # -- _id lookups (an upsert batch reads what is stored with one $in of UUIDs) --------------
    Case("in_of_uuids_returns_the_stored_ones", IN, UUIDS,
         lambda c: sorted(d["n"] for d in c.find({"_id": {"$in": [U3, U1, U_ABSENT]}})), [1, 3]),
    Case("in_of_uuids_with_a_projection", PROJECTION, UUIDS,
         lambda c: sorted(c.find({"_id": {"$in": [U2]}}, {"n": 1}), key=str),
         [{"_id": U2, "n": 2}]),
    Case("id_equality_and_another_condition_must_both_hold", IN, UUIDS,
         ids({"_id": {"$in": [U1, U2]}, "n": {"$gte": 2}}), [U2]),
    # -- arrays --------------------------------------------------------------------------------
    Case("a_value_matches_an_array_holding_it_or_the_scalar", ARRAYS, LABELLED,
         ids({"labels": "urgent"}), ["a", "b", "c", "f"], indexed_on=("labels",)),
    Case("an_array_matches_only_the_same_array_in_order", ARRAYS, LABELLED,
         ids({"labels": ["backend", "urgent"]}), ["a"], indexed_on=("labels",)),
    Case("an_empty_array_matches_only_empty_arrays", ARRAYS, LABELLED,
         ids({"labels": []}), ["e"], indexed_on=("labels",)),
    Case("all_ignores_order_and_other_elements", ALL, LABELLED,
         ids({"labels": {"$all": ["urgent", "backend"]}}), ["a", "b", "c"]),
    Case("in_matches_an_array_holding_any_value", IN, LABELLED,
         ids({"labels": {"$in": ["ui", "nope"]}}), ["c", "d"], indexed_on=("labels",)),
    Case("nin_excludes_arrays_holding_any_value", NIN, LABELLED,
         ids({"labels": {"$nin": ["urgent"]}}), ["d", "e", "g"], indexed_on=("labels",)),
    Case("range_conditions_may_be_met_by_different_elements", ARRAYS, LABELLED,
         ids({"points": {"$gt": 4, "$lt": 7}}), ["a", "d", "f"], indexed_on=("points",)),
    Case("elem_match_needs_one_element_meeting_all_conditions", ELEM_MATCH, LABELLED,
         ids({"points": {"$elemMatch": {"$gt": 4, "$lt": 7}}}), ["d"]),
    Case("an_array_position_is_a_path", ARRAYS, LABELLED,
         ids({"labels.0": "urgent"}), ["b"]),
    Case("distinct_counts_each_array_element", DISTINCT, LABELLED,
         lambda c: sorted(c.distinct("labels")), ["backend", "ui", "urgent"]),
    Case("distinct_reads_only_documents_matching_its_filter", DISTINCT,
         [{"_id": 1, "status_id": "1", "is_deleted": False}, {"_id": 2, "status_id": "2"},
          {"_id": 3, "status_id": "3", "is_deleted": True}, {"_id": 4, "status_id": "1"}],
         lambda c: sorted(c.distinct("status_id", {"is_deleted": {"$ne": True}})), ["1", "2"],
         indexed_on=("is_deleted",)),
    # -- nested documents ----------------------------------------------------------------------
    Case("a_dotted_path_reaches_into_nested_documents", EMBEDDED, ISSUES,
         ids({"raw.fields.summary": "Crash"}), ["p1"]),
    Case("a_whole_nested_document_matches_exactly_and_in_order", EMBEDDED, ISSUES,
         lambda c: (c.count_documents({"raw": {"fields": {"summary": "Crash",
                                                           "updated": "2026-01-05"}}}),
                    c.count_documents({"raw": {"fields": {"updated": "2026-01-05",
                                                           "summary": "Crash"}}})),
         (1, 0),
         known_difference="compares nested documents as Python dicts, ignoring key order; our "
         "code never filters on a whole nested document (only on top-level fields and `_id`)"),
    # -- projections ---------------------------------------------------------------------------
    Case("an_inclusion_projection_keeps_id", PROJECTION, ISSUES,
         found({}, {"key": 1}), [{"_id": "p1", "key": "A-1"}, {"_id": "p2", "key": "A-2"}]),
    Case("id_can_be_excluded_from_an_inclusion", PROJECTION, ISSUES,
         found({}, {"key": 1, "_id": 0}, sort="key"), [{"key": "A-1"}, {"key": "A-2"}]),
    Case("an_exclusion_projection_drops_only_those_fields", PROJECTION, ISSUES,
         found({}, {"raw": 0, "labels": 0}),
         [{"_id": "p1", "key": "A-1", "status": "Done"}, {"_id": "p2", "key": "A-2"}]),
    Case("a_dotted_inclusion_keeps_the_nested_path_only", PROJECTION, ISSUES,
         found({}, {"raw.fields.summary": 1}),
         [{"_id": "p1", "raw": {"fields": {"summary": "Crash"}}}, {"_id": "p2"}]),
    Case("a_projected_missing_field_is_not_added", PROJECTION, ISSUES,
         found({"_id": "p2"}, {"status": 1, "labels": 1}), [{"_id": "p2"}]),
    Case("an_id_only_projection", PROJECTION, ISSUES,
         found({}, {"_id": 1}), [{"_id": "p1"}, {"_id": "p2"}]),
    # -- counts --------------------------------------------------------------------------------
    Case("count_documents_counts_the_filter", COUNT, DELETABLE,
         lambda c: (c.count_documents({}), c.count_documents({"is_deleted": {"$ne": True}}),
                    c.count_documents({"is_deleted": True})),
         (4, 3, 1), indexed_on=("is_deleted",)),
    Case("count_documents_honours_skip_and_limit", COUNT, DELETABLE,
         lambda c: (c.count_documents({}, skip=1), c.count_documents({}, limit=2),
                    c.count_documents({}, skip=3, limit=5)),
         (3, 2, 1)),
    Case("count_with_or", COUNT, NULLS,
         lambda c: c.count_documents({"$or": [{"v": None}, {"v": ""}]}), 3),
    # -- sorting -------------------------------------------------------------------------------
    Case("ascending_sort_orders_types_null_numbers_strings_booleans_dates", COMPARISON_ORDER,
         [{"_id": "d", "s": T}, {"_id": "b", "s": True}, {"_id": "t", "s": "a"},
          {"_id": "f", "s": 2.5}, {"_id": "i", "s": 1}, {"_id": "n", "s": None}],
         lambda c: [d["_id"] for d in c.find({}).sort("s", ASCENDING)],
         ["n", "i", "f", "t", "b", "d"]),
    Case("a_descending_date_sort_puts_dates_first_then_strings_then_missing", COMPARISON_ORDER,
         WINDOW,
         lambda c: [d.get("updated") for d in c.find({}, {"updated": 1, "_id": 0},
                                                     sort=[("updated", -1)])],
         [DAY + timedelta(days=1), DAY + timedelta(days=1) - MS, DAY + timedelta(hours=12),
          DAY, DAY - MS, "2026-01-05T12:00:00.000+0000", None],
         indexed_on=("updated",)),
    Case("newest_of_a_filtered_projection", SORT, WINDOW,
         lambda c: list(c.find({"connection_id": "c1", "updated": {"$lt": DAY + timedelta(days=1)}},
                               {"updated": 1, "_id": 0}, sort=[("updated", -1)]).limit(1)),
         [{"updated": DAY + timedelta(hours=12)}], indexed_on=("connection_id", "updated")),
    Case("strings_sort_by_binary_comparison", COMPARISON_ORDER,
         [{"_id": 1, "name": "beta"}, {"_id": 2, "name": "Zulu"}, {"_id": 3, "name": "alpha"}],
         lambda c: [d["name"] for d in c.find({}).sort("name", ASCENDING)],
         ["Zulu", "alpha", "beta"]),
    # -- unique indexes ------------------------------------------------------------------------
    Case("a_duplicate_natural_key_is_refused", UNIQUE,
         [{"_id": 1, "connection_id": "c1", "issue_id": "10"}],
         error_of(lambda c: c.insert_one({"_id": 2, "connection_id": "c1", "issue_id": "10"})),
         ("DuplicateKeyError", 11000, 1), indexes=ISSUE_KEY),
    Case("a_compound_key_is_unique_only_as_a_whole", UNIQUE,
         [{"_id": 1, "connection_id": "c1", "issue_id": "10"}],
         error_of(lambda c: c.insert_many([{"_id": 2, "connection_id": "c1", "issue_id": "11"},
                                           {"_id": 3, "connection_id": "c2", "issue_id": "10"}])),
         ("no error", None, 3), indexes=ISSUE_KEY),
    Case("an_update_that_would_duplicate_a_key_is_refused_and_changes_nothing", UNIQUE,
         [{"_id": 1, "connection_id": "c1", "issue_id": "10"},
          {"_id": 2, "connection_id": "c1", "issue_id": "11"}],
         lambda c: (error_of(lambda c: c.update_one({"_id": 2}, {"$set": {"issue_id": "10"}}))(c),
                    _one(c, 2)["issue_id"]),
         (("DuplicateKeyError", 11000, 2), "11"), indexes=ISSUE_KEY),
    Case("a_duplicate_id_is_refused", UNIQUE, [{"_id": "x"}],
         error_of(lambda c: c.insert_one({"_id": "x", "other": 1})),
         ("DuplicateKeyError", 11000, 1)),
    Case("a_unique_index_holds_one_document_missing_the_field", UNIQUE,
         [{"_id": 1, "name": "a"}, {"_id": 2}],
         error_of(lambda c: c.insert_one({"_id": 3})), ("DuplicateKeyError", 11000, 2),
         indexes=[IndexModel([("name", ASCENDING)], unique=True, name="name_unique")]),
    Case("a_compound_unique_index_treats_a_missing_field_as_null", UNIQUE,
         [{"_id": 1, "connection_id": "c1"}],
         error_of(lambda c: c.insert_one({"_id": 2, "connection_id": "c1", "issue_id": None})),
         ("DuplicateKeyError", 11000, 1), indexes=ISSUE_KEY),
    # -- bulk writes ---------------------------------------------------------------------------
    Case("an_unordered_bulk_write_goes_on_after_a_duplicate", BULK_WRITE, [{"_id": "old"}],
         bulk_outcome([InsertOne({"_id": "a"}), InsertOne({"_id": "old"}), InsertOne({"_id": "b"})],
                      ordered=False),
         (2, [(1, 11000)], ["a", "b", "old"])),
    Case("an_ordered_bulk_write_stops_at_the_first_error", BULK_WRITE, [{"_id": "old"}],
         bulk_outcome([InsertOne({"_id": "a"}), InsertOne({"_id": "old"}), InsertOne({"_id": "b"})],
                      ordered=True),
         (1, [(1, 11000)], ["a", "old"])),
    Case("a_guarded_replace_skips_a_newer_stored_version", BULK_WRITE,
         [{"_id": "i", "updated": T, "summary": "new"}],
         then(lambda c: c.bulk_write([ReplaceOne({"_id": "i", **_guard(T - MS)},
                                                 {"updated": T - MS, "summary": "old"})],
                                     ordered=False).matched_count,
              lambda c: _one(c, "i")["summary"]),
         (0, "new")),
    Case("a_guarded_replace_replaces_an_older_version_whole", REPLACE_ONE,
         [{"_id": "i", "updated": T - MS, "summary": "old", "gone": 1}],
         then(lambda c: c.bulk_write([ReplaceOne({"_id": "i", **_guard(T)},
                                                 {"updated": T, "summary": "new"})],
                                     ordered=False).modified_count,
              lambda c: _one(c, "i")),
         (1, {"_id": "i", "updated": T, "summary": "new"})),
    Case("a_guarded_replace_of_an_unversioned_document_replaces_it", REPLACE_ONE,
         [{"_id": "i", "summary": "legacy"}],
         then(lambda c: c.replace_one({"_id": "i", **_guard(T)}, {"updated": T, "summary": "n"}),
              lambda c: _one(c, "i")["summary"]),
         ({"matched_count": 1, "modified_count": 1, "upserted_id": None}, "n")),
    Case("touching_synced_at_in_bulk_counts_matches", BULK_WRITE,
         [{"_id": "a", "synced_at": T}, {"_id": "b", "synced_at": T}],
         lambda c: c.bulk_write([UpdateOne({"_id": "a"}, {"$set": {"synced_at": T + MS}}),
                                 UpdateOne({"_id": "b"}, {"$set": {"synced_at": T}}),
                                 UpdateOne({"_id": "zz"}, {"$set": {"synced_at": T}})],
                                ordered=False).bulk_api_result["nMatched"],
         2),
    # -- upserts -------------------------------------------------------------------------------
    Case("an_upsert_that_misses_inserts_the_id_set_and_set_on_insert_fields", SET_ON_INSERT, [],
         then(lambda c: c.update_one({"_id": "n", **_guard(T)},
                                     {"$set": {"updated": T, "summary": "s"},
                                      "$setOnInsert": {"first_seen_at": DAY}}, upsert=True),
              lambda c: _one(c, "n")),
         ({"matched_count": 0, "modified_count": 0, "upserted_id": "n"},
          {"_id": "n", "updated": T, "summary": "s", "first_seen_at": DAY})),
    Case("an_upsert_that_matches_ignores_set_on_insert", SET_ON_INSERT,
         [{"_id": "n", "updated": T - MS, "first_seen_at": DAY}],
         then(lambda c: c.update_one({"_id": "n", **_guard(T)},
                                     {"$set": {"updated": T},
                                      "$setOnInsert": {"first_seen_at": T}}, upsert=True),
              lambda c: _one(c, "n")["first_seen_at"]),
         ({"matched_count": 1, "modified_count": 1, "upserted_id": None}, DAY)),
    Case("a_guarded_upsert_of_a_stale_version_fails_on_the_duplicate_id", UPSERT_DUPLICATES,
         [{"_id": "n", "updated": T, "summary": "new"}],
         lambda c: (error_of(lambda c: c.update_one(
             {"_id": "n", **_guard(T - MS)}, {"$set": {"updated": T - MS, "summary": "old"}},
             upsert=True))(c), _one(c, "n")["summary"]),
         (("DuplicateKeyError", 11000, 1), "new")),
    Case("update_many_counts_only_documents_it_changed", UPDATE_MANY, DELETABLE,
         lambda c: summary(c.update_many({"_id": {"$in": ["live", "gone", "legacy"]}},
                                         {"$set": {"is_deleted": True}})),
         {"matched_count": 3, "modified_count": 2, "upserted_id": None}),
    Case("a_replacement_without_id_keeps_the_stored_id", REPLACE_ONE, [{"_id": "k", "a": 1}],
         then(lambda c: c.replace_one({"a": 1}, {"b": 2}), lambda c: list(c.find({}))),
         ({"matched_count": 1, "modified_count": 1, "upserted_id": None}, [{"_id": "k", "b": 2}])),
    Case("update_one_with_no_match_and_no_upsert_changes_nothing", UPDATE_ONE, [{"_id": "k"}],
         then(lambda c: c.update_one({"_id": "other"}, {"$set": {"a": 1}}),
              lambda c: list(c.find({}))),
         ({"matched_count": 0, "modified_count": 0, "upserted_id": None}, [{"_id": "k"}])),
]


def _variants(cases: Iterable[Case]) -> list[Any]:
    params = []
    for case in cases:
        params.append(pytest.param(case, False, id=case.name))
        if case.indexed_on:
            params.append(pytest.param(case, True, id=f"{case.name}-indexed"))
    return params


@pytest.mark.parametrize(("case", "indexed"), _variants(CASES))
def test_the_store_answers_as_the_manual_documents(
    case: Case, indexed: bool, store: Store, request: pytest.FixtureRequest
) -> None:
    if case.known_difference and store.uri is None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.known_difference))
    collection = store.db["semantics_case"]
    if case.indexes:
        collection.create_indexes(case.indexes)
    if indexed:
        collection.create_indexes([IndexModel([(name, ASCENDING)]) for name in case.indexed_on])
    if case.documents:
        collection.insert_many([dict(document) for document in case.documents])

    answer = case.run(collection)

    assert answer == case.expected, f"{case.name}: see {case.manual}"


def test_every_case_cites_a_page_of_the_manual_and_has_a_unique_name() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert all(case.manual.startswith(MANUAL + "/") for case in CASES)
