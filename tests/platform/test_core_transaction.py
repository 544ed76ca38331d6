"""core_transaction: a door's one-statement write outside the ORM session, committed at the end
of its block, rolled back if the block raises, and waking the dispatcher only once committed."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from service.models import ResetRequest
from service.platform.clock import utcnow
from service.platform.database import UNCOMMITTED_WORK, core_transaction, note_queued_work, take_queued_work
from service.platform.extensions import db
from service.resets.policy import reset_policy
from service.resets.requests import request_reset


def requests_recorded() -> int:
    return db.session.scalar(select(func.count()).select_from(ResetRequest)) or 0


def test_the_write_is_committed_at_the_end_of_the_block_and_wakes_the_dispatcher(app: Flask) -> None:
    with app.app_context():
        with core_transaction(db.session) as connection:
            request_reset(connection, "jane", policy=reset_policy(), ip=None, now=utcnow())
            assert not take_queued_work(db.session)  # not before the commit
        assert take_queued_work(db.session)
        assert not take_queued_work(db.session)  # taken once
        assert requests_recorded() == 1


def test_a_block_that_raises_writes_nothing_and_wakes_nobody(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(RuntimeError), core_transaction(db.session) as connection:
            request_reset(connection, "jane", policy=reset_policy(), ip=None, now=utcnow())
            raise RuntimeError("the door failed after the insert")
        assert not take_queued_work(db.session)
        assert requests_recorded() == 0


def test_no_mark_is_left_on_the_pooled_connection(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(RuntimeError), core_transaction(db.session) as connection:
            note_queued_work(connection)
            raise RuntimeError("rolled back")
        # The next transaction on the same pooled connection starts clean.
        with core_transaction(db.session) as connection:
            assert UNCOMMITTED_WORK not in connection.info
        assert not take_queued_work(db.session)
