"""dlt loading a Postgres table into a Postgres dataset as a type 2 slowly
changing dimension: `merge` with the `scd2` strategy, where each row version
is identified by a hash of the row and rows missing from the extract are
retired.

Usage: dlt_step.py URL SCHEMA TABLE DATASET PIPELINES_DIR

The first call is the initial load; the next one (with the same
PIPELINES_DIR) is the incremental step. The default sqlalchemy backend of
the sql_database source reads the table.
"""

import sys

import dlt
from dlt.sources.sql_database import sql_table


def main() -> None:
    url, schema, table, dataset, pipelines_dir = sys.argv[1:]
    source = sql_table(
        # SQLAlchemy 2.1 takes postgresql:// to mean psycopg 3; dlt's own
        # destination uses psycopg2, so the source does too.
        credentials=url.replace("postgresql://", "postgresql+psycopg2://", 1),
        schema=schema,
        table=table,
        write_disposition={"disposition": "merge", "strategy": "scd2"},
    )
    pipeline = dlt.pipeline(
        pipeline_name="diff_compare",
        pipelines_dir=pipelines_dir,
        # dlt insists on a password; the local server's trust
        # authentication ignores it.
        destination=dlt.destinations.postgres(url.replace("@", ":unused@", 1)),
        dataset_name=dataset,
    )
    info = pipeline.run(source)
    info.raise_on_failed_jobs()
    print(info)


if __name__ == "__main__":
    main()
