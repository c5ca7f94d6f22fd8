-- Web Push subscriptions (issue 25 item 2): the browsers a practitioner opted in to receive
-- notifications on. `subscription` is the browser's PushSubscription (endpoint URL, p256dh
-- key, auth secret) encrypted under the field-encryption keys (crypto.rs "v1:…"): the endpoint
-- identifies a browser and the auth secret lets its holder read the messages.
-- `endpoint_index` is the keyed blind index of the endpoint, so subscribing the same browser
-- again replaces its keys instead of adding a row. Rows go with the account (erasure).
CREATE TABLE push_subscriptions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint_index text NOT NULL,
    subscription   text NOT NULL,
    created_at     timestamptz NOT NULL,
    UNIQUE (user_id, endpoint_index)
);
