-- Events, their single-letter tag index, NIP-09 tombstones and counters.
-- Binary columns hold hex ids/keys as bytes; text that may contain NUL
-- (content, tag values, d tags) is stored as UTF-8 bytea.

CREATE TABLE events (
    id          bytea   PRIMARY KEY,
    pubkey      bytea   NOT NULL,
    created_at  bigint  NOT NULL,
    kind        integer NOT NULL,
    tags        text    NOT NULL,          -- the tags as a JSON array
    content     bytea   NOT NULL,
    sig         bytea   NOT NULL,
    d_tag       bytea,                     -- '' replaceable, d value addressable, else NULL
    expires_at  bigint                     -- NIP-40
);
CREATE UNIQUE INDEX events_address ON events (pubkey, kind, d_tag) WHERE d_tag IS NOT NULL;
CREATE INDEX events_pubkey_kind_created ON events (pubkey, kind, created_at DESC);
CREATE INDEX events_pubkey_created ON events (pubkey, created_at DESC);
CREATE INDEX events_kind_created ON events (kind, created_at DESC);
CREATE INDEX events_created ON events (created_at DESC, id);
CREATE INDEX events_expires ON events (expires_at) WHERE expires_at IS NOT NULL;

-- One row per single-letter tag with a value; kind and created_at are copied
-- so that "#x" + kinds + since/until queries are answered from this index.
CREATE TABLE event_tags (
    event_id    bytea   NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name        text    NOT NULL,
    value       bytea   NOT NULL,
    kind        integer NOT NULL,
    created_at  bigint  NOT NULL
);
CREATE INDEX event_tags_lookup ON event_tags (name, value, created_at DESC);
CREATE INDEX event_tags_event ON event_tags (event_id);

-- NIP-09 tombstones: target is an event id (hex) or an address "kind:pubkey:d".
CREATE TABLE deletions (
    pubkey      bytea   NOT NULL,
    target      bytea   NOT NULL,
    created_at  bigint  NOT NULL,
    PRIMARY KEY (pubkey, target)
);

CREATE TABLE counters (
    name        text    NOT NULL,
    key         text    NOT NULL,
    value       bigint  NOT NULL,
    PRIMARY KEY (name, key)
);

-- Saves a batch of events in one statement; returns one outcome per event
-- ('stored', 'duplicate', 'shadowed', 'deleted'). Tags of event i are
-- p_tag_names/p_tag_values[p_tag_first[i] .. p_tag_first[i] + p_tag_count[i] - 1].
-- Replaceable/addressable saves serialise on an advisory lock per address, so
-- concurrent writers (other relay processes) cannot keep two versions.
CREATE FUNCTION nostream_save_events(
    p_ids bytea[], p_pubkeys bytea[], p_created bigint[], p_kinds integer[],
    p_tags text[], p_contents bytea[], p_sigs bytea[], p_dtags bytea[], p_expires bigint[],
    p_tag_first integer[], p_tag_count integer[], p_tag_names text[], p_tag_values bytea[]
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_ids, 1), 0);
    outcomes text[] := '{}';
    old_id bytea;
    old_created bigint;
    lo integer;
    hi integer;
BEGIN
    FOR i IN 1..n LOOP
        IF EXISTS (SELECT 1 FROM events WHERE id = p_ids[i]) THEN
            outcomes := outcomes || 'duplicate'::text;
            CONTINUE;
        END IF;
        IF EXISTS (
            SELECT 1 FROM deletions d
            WHERE d.pubkey = p_pubkeys[i] AND d.target = convert_to(encode(p_ids[i], 'hex'), 'UTF8')
        ) OR (p_dtags[i] IS NOT NULL AND EXISTS (
            SELECT 1 FROM deletions d
            WHERE d.pubkey = p_pubkeys[i]
              AND d.target = convert_to(p_kinds[i]::text || ':' || encode(p_pubkeys[i], 'hex') || ':', 'UTF8') || p_dtags[i]
              AND d.created_at >= p_created[i]
        )) THEN
            outcomes := outcomes || 'deleted'::text;
            CONTINUE;
        END IF;
        IF p_dtags[i] IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(hashtextextended(
                p_kinds[i]::text || ':' || encode(p_pubkeys[i], 'hex') || ':' || encode(p_dtags[i], 'hex'), 0));
            SELECT e.id, e.created_at INTO old_id, old_created FROM events e
            WHERE e.pubkey = p_pubkeys[i] AND e.kind = p_kinds[i] AND e.d_tag = p_dtags[i];
            IF FOUND THEN
                IF old_created > p_created[i] OR (old_created = p_created[i] AND old_id < p_ids[i]) THEN
                    outcomes := outcomes || 'shadowed'::text;
                    CONTINUE;
                END IF;
                DELETE FROM events WHERE id = old_id;
            END IF;
        END IF;
        INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, d_tag, expires_at)
        VALUES (p_ids[i], p_pubkeys[i], p_created[i], p_kinds[i], p_tags[i], p_contents[i],
                p_sigs[i], p_dtags[i], p_expires[i])
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            outcomes := outcomes || 'duplicate'::text;
            CONTINUE;
        END IF;
        IF p_tag_count[i] > 0 THEN
            lo := p_tag_first[i];
            hi := lo + p_tag_count[i] - 1;
            INSERT INTO event_tags (event_id, name, value, kind, created_at)
            SELECT p_ids[i], t.name, t.value, p_kinds[i], p_created[i]
            FROM unnest(p_tag_names[lo:hi], p_tag_values[lo:hi]) AS t(name, value);
        END IF;
        outcomes := outcomes || 'stored'::text;
    END LOOP;
    RETURN outcomes;
END;
$$;
