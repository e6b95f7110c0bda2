-- Latest version of each card transaction, loaded from inbox/transactions/.
--
-- A transaction is re-sent whole when it settles or is declined, so this table holds one row per
-- id and the guard is (updated_at, event_at, event_id), as for cards: updated_at is the producer's
-- version clock, the others break its one-second ties. amount is numeric, not double precision:
-- money is summed and compared, and the producer writes at most two decimals. No foreign key to
-- cards: events arrive in any order and a transaction may name a card that is never loaded.
CREATE TABLE transactions (
    id         bigint    PRIMARY KEY,
    card_id    bigint    NOT NULL,
    amount     numeric   NOT NULL,
    currency   text      NOT NULL,
    merchant   text      NOT NULL,
    status     text      NOT NULL CHECK (status IN ('pending', 'settled', 'declined')),
    updated_at timestamp NOT NULL,
    event_at   timestamp NOT NULL,
    event_id   uuid      NOT NULL
);
-- A card's transactions, the natural question to ask of this table.
CREATE INDEX transactions_card_id ON transactions (card_id);
