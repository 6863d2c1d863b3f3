"""Reviews may hold a note without a verdict, so a note typed before any verdict is saved too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The append-only trigger as 0001 wrote it; reused, not rewritten, so both revisions agree.
initial = importlib.import_module("db.migrations.versions.0001_initial")


def upgrade() -> None:
    _set_verdict_nullable(True)


def downgrade() -> None:
    note_only = op.get_bind().scalar(sa.text("SELECT count(*) FROM reviews WHERE verdict IS NULL"))
    if note_only:
        raise RuntimeError(f"{note_only} reviews hold a note without a verdict; 0001 cannot store them")
    _set_verdict_nullable(False)


def _set_verdict_nullable(nullable: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("reviews", "verdict", existing_type=sa.String(length=64), nullable=nullable)
        return
    # SQLite cannot change NOT NULL in place: batch mode copies the table, and the copy loses the
    # trigger that keeps reviews append-only, so it is created again on the new table.
    op.execute("DROP TRIGGER IF EXISTS reviews_append_only")
    with op.batch_alter_table("reviews", recreate="always") as batch:
        batch.alter_column("verdict", existing_type=sa.String(length=64), nullable=nullable)
    initial._reviews_append_only()
