"""Receipts, statements and exports: documents read from the ledger and the lists.

Nothing here writes: a receipt, a statement or an export is a view of rows that
already exist, rendered as a PDF or a CSV file.
"""
