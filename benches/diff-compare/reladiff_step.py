"""reladiff's joindiff between the table as it was and as it is now.

Usage: reladiff_step.py URL SCHEMA.OLD SCHEMA.NEW COLUMN...

Prints "added updated deleted": the keys only in NEW, in both with a
difference, only in OLD. Every differing row is fetched, as a caller that
acts on the diff would.
"""

import sys

from reladiff import Algorithm, connect_to_table, diff_tables


def main() -> None:
    url, old, new, *columns = sys.argv[1:]
    before = connect_to_table(url, old, "id", extra_columns=tuple(columns))
    after = connect_to_table(url, new, "id", extra_columns=tuple(columns))
    gone, came = set(), set()
    with diff_tables(before, after, algorithm=Algorithm.JOINDIFF) as diff:
        for sign, row in diff:
            (gone if sign == "-" else came).add(row[0])
    print(len(came - gone), len(came & gone), len(gone - came))


if __name__ == "__main__":
    main()
