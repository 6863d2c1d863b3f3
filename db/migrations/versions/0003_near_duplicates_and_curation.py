"""Perceptual hashes and near-duplicate groups on samples; the curation list the Review page works through.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("samples", sa.Column("phash", sa.String(length=16), nullable=True))
    op.add_column("samples", sa.Column("dhash", sa.String(length=16), nullable=True))
    # A plain sample id, no foreign key: SQLite adds one to an existing table only by rebuilding it, and
    # dropping `samples` for the rebuild (foreign keys on) would delete every result and review that points
    # at it. Samples are never deleted one by one (a vanished file is flagged), and each registration rewrites it.
    op.add_column("samples", sa.Column("near_duplicate_of", sa.Integer(), nullable=True))
    op.create_table(
        "curation_items",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_curation_items_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_curation_items_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sample_id", name=op.f("pk_curation_items")),
    )
    op.create_index(op.f("ix_curation_items_dataset_id"), "curation_items", ["dataset_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_curation_items_dataset_id"), table_name="curation_items")
    op.drop_table("curation_items")
    op.drop_column("samples", "near_duplicate_of")
    op.drop_column("samples", "dhash")
    op.drop_column("samples", "phash")
