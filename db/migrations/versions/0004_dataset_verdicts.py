"""A dataset keeps the verdict set its reviewers chose (remove / keep / relabel, anomaly / normal / unsure, their
own), so it is the same after a reload, on every page and for every reviewer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("datasets", sa.Column("verdicts", JSON, nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # in place (SQLite 3.35+): a batch copy would drop the table that samples cascade from
        op.execute("ALTER TABLE datasets DROP COLUMN verdicts")
        return
    op.drop_column("datasets", "verdicts")
