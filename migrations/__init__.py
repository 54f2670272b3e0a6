"""Alembic migrations of the feedback database (score log, outcomes, judgements, training views).

Run by the service on start, or by `dealscore db upgrade`; configured in code, no alembic.ini needed.
"""
