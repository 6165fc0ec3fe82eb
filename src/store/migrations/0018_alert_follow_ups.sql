-- Alert follow-up (督办, 第二十八–二十九条): a supervisor acknowledges an alert, assigns it to a
-- department (USCC) with a due time (epoch ms), the department answers or appeals (申诉) with a
-- reason, the supervisor closes it with a note. `alert_follow_ups` holds where each followed-up
-- alert stands; `alert_follow_up_steps` every step taken, in order (`actor`: the key or staff
-- member, as in the audit log; `text`: the reason or note, as written).
CREATE TABLE alert_follow_ups (
    alert_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    department TEXT NOT NULL DEFAULT '',
    due_at BIGINT NULL,
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT NULL
);
CREATE INDEX alert_follow_ups_department ON alert_follow_ups (department, state);

CREATE TABLE alert_follow_up_steps (
    alert_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    text TEXT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (alert_id, step)
);
