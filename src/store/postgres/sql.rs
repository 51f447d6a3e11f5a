//! Every statement the PostgreSQL store issues on a merchant table, in one place, so
//! that `tests/it/pg_explain.rs` can EXPLAIN each one (`EXPLAINED`) and fail on a
//! sequential scan: each index exists because one of these needs it. The audit and
//! `shard status` read whole tables on purpose and are not listed.

use super::rows::{PAYMENT_COLUMNS, kept_answer_columns};

/// The shard's clock in ms since the epoch: write fences are leases on it, so the API
/// instances' clocks never matter.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::int8"
    };
}
pub(crate) use db_now_ms;

/// A read finds rows only in a bucket the shard owns: after a move switched the bucket
/// away, the old copy (until it is deleted) reads as nothing, and the reader reroutes.
macro_rules! owned_here {
    () => {
        " AND EXISTS (SELECT 1 FROM paytool_buckets o WHERE o.bucket = $1)"
    };
}

// Merchants (mod.rs).
pub const MERCHANT: &str = concat!(
    "SELECT name, key_hash, previous_key_hash, previous_key_expires_ms, \
     created_ms FROM merchants WHERE bucket = $1 AND id = $2",
    owned_here!()
);
/// Whether this shard owns a bucket and whether a move's write fence holds it, locked for
/// the writing transaction (a move's fence waits for it, and it for the fence).
pub const OWNS_BUCKET: &str = concat!(
    "SELECT bucket, coalesce(fenced_until_ms > ",
    db_now_ms!(),
    ", false) FROM paytool_buckets WHERE bucket = $1 FOR SHARE"
);
/// Whether this shard owns a bucket, for a read that found nothing (no lock).
pub const OWNS: &str = "SELECT bucket FROM paytool_buckets WHERE bucket = $1";
/// A new key; the old one kept until $3 (NULL: dropped at once).
pub const ROLL_KEY: &str = "UPDATE merchants SET \
     previous_key_hash = CASE WHEN $3::int8 IS NULL THEN NULL ELSE key_hash END, \
     previous_key_expires_ms = $3, key_hash = $4 WHERE bucket = $1 AND id = $2 \
     RETURNING name, created_ms";
pub const INSERT_MERCHANT: &str =
    "INSERT INTO merchants (bucket, id, name, key_hash, created_ms) VALUES ($1, $2, $3, $4, $5)";

// Reads (mod.rs).
pub fn payment() -> String {
    format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE bucket = $1 AND merchant_id = $2 AND id = $3{}",
        owned_here!()
    )
}
/// Ids are time-ordered, so "older than the cursor" is "id < cursor", newest first.
pub fn list_payments() -> String {
    format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE bucket = $1 AND merchant_id = $2 \
         AND id < $3{} ORDER BY id DESC LIMIT $4",
        owned_here!()
    )
}
pub fn payments_with_key_prefix() -> String {
    format!(
        "SELECT {PAYMENT_COLUMNS}, idempotency_key FROM payments WHERE bucket = $1 \
         AND merchant_id = $2 AND id > $3 AND starts_with(idempotency_key, $4){} \
         ORDER BY id LIMIT $5",
        owned_here!()
    )
}
pub const BALANCE: &str = concat!(
    "SELECT currency, account, amount FROM balances \
     WHERE bucket = $1 AND merchant_id = $2 \
     AND account IN ('merchant_pending', 'merchant_available')",
    owned_here!(),
    " ORDER BY currency"
);

/// The payment and refund a kept answer showed, joined to its key's row `i`
/// (`rows::kept_answer_columns`).
const SHOWN_JOINS: &str = " LEFT JOIN payments p ON p.bucket = i.bucket \
     AND p.merchant_id = i.merchant_id AND p.id = i.payment_id \
     LEFT JOIN refunds r ON r.bucket = i.bucket AND r.merchant_id = i.merchant_id \
     AND r.id = i.refund_id";

/// One kept idempotent answer with what it showed (`cache verify`, export.rs).
pub fn answer() -> String {
    format!(
        "SELECT {} FROM idempotency i{SHOWN_JOINS} \
         WHERE i.bucket = $1 AND i.merchant_id = $2 AND i.key = $3{}",
        kept_answer_columns(),
        owned_here!()
    )
}
/// Every merchant in an owned bucket, with `MERCHANT`'s columns first (`cache seed`
/// reads the whole table on purpose, so it is not in `explained`).
pub const EXPORT_MERCHANTS: &str = "SELECT m.name, m.key_hash, m.previous_key_hash, \
     m.previous_key_expires_ms, m.created_ms, m.bucket, m.id FROM merchants m \
     JOIN paytool_buckets o ON o.bucket = m.bucket";
/// Every payment in an owned bucket created at or after $1 (a whole-table read too).
pub fn export_payments() -> String {
    format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments p JOIN paytool_buckets o ON o.bucket = p.bucket \
         WHERE p.created_ms >= $1"
    )
}

// The group-commit writer's statements (writer.rs).
/// The batch's buckets this shard owns, and whether a move fences each.
pub const OWNED_SQL: &str = concat!(
    "SELECT bucket, coalesce(fenced_until_ms > ",
    db_now_ms!(),
    ", false) FROM paytool_buckets WHERE bucket = ANY($1::int2[]) ORDER BY bucket FOR SHARE"
);
/// The batch's kept answers, with what each showed.
pub fn idempotency_sql() -> String {
    format!(
        "SELECT {} FROM idempotency i \
         JOIN UNNEST($1::int2[], $2::text[], $3::text[]) AS k(bucket, merchant_id, key) \
         ON i.bucket = k.bucket AND i.merchant_id = k.merchant_id AND i.key = k.key{SHOWN_JOINS}",
        kept_answer_columns()
    )
}
/// The payments a batch changes, locked, with their bucket and next transfer number.
pub fn payments_sql() -> String {
    format!(
        "SELECT {PAYMENT_COLUMNS}, p.bucket, (SELECT coalesce(max(q.seq) + 1, 0) FROM transfers q \
         WHERE q.bucket = p.bucket AND q.payment_id = p.id) \
         FROM payments p WHERE (p.bucket, p.merchant_id, p.id) IN \
         (SELECT * FROM UNNEST($1::int2[], $2::text[], $3::text[])) \
         ORDER BY p.bucket, p.merchant_id, p.id FOR UPDATE"
    )
}
/// Every write of a batch in one statement of data-modifying CTEs (each runs once and to
/// completion; none sees another's rows, and none needs to: created and changed payments
/// are distinct, and nothing here references another table). One statement instead of
/// six halves PostgreSQL's fixed cost a batch (BENCHMARKS.md). Parameters, in order:
/// the idempotency rows' 11 columns ($1-$11: what each answer showed, not its body), the
/// created payments' 15 ($12-$26), the changed payments' 6 and the update time
/// ($27-$33), the transfers' 8 ($34-$41), the refunds' 7 ($42-$48), the balance deltas'
/// 5 ($49-$53). Returns how many keys were inserted (fewer than given: another instance
/// committed one meanwhile) and how many payments were updated.
pub const WRITE_BATCH_SQL: &str = "WITH keys AS (\
     INSERT INTO idempotency (bucket, merchant_id, key, request_fingerprint, status, \
     payment_id, payment_status, amount_captured, amount_refunded, refund_id, created_ms) \
     SELECT * FROM UNNEST($1::int2[], $2::text[], $3::text[], $4::bytea[], $5::int2[], \
     $6::text[], $7::int2[], $8::int8[], $9::int8[], $10::text[], $11::int8[]) \
     ON CONFLICT DO NOTHING RETURNING 1), \
   created AS (\
     INSERT INTO payments (bucket, merchant_id, id, idempotency_key, amount, currency, status, \
     amount_captured, amount_refunded, card_brand, card_last4, card_fingerprint, failure_code, \
     created_ms, updated_ms) \
     SELECT * FROM UNNEST($12::int2[], $13::text[], $14::text[], $15::text[], $16::int8[], \
     $17::text[], $18::text[], $19::int8[], $20::int8[], $21::text[], $22::text[], $23::text[], \
     $24::text[], $25::int8[], $26::int8[])), \
   changed AS (\
     UPDATE payments p SET status = u.status, amount_captured = u.captured, \
     amount_refunded = u.refunded, updated_ms = $33 \
     FROM UNNEST($27::int2[], $28::text[], $29::text[], $30::text[], $31::int8[], $32::int8[]) \
     AS u(bucket, merchant_id, id, status, captured, refunded) \
     WHERE p.bucket = u.bucket AND p.merchant_id = u.merchant_id AND p.id = u.id RETURNING 1), \
   transfers_in AS (\
     INSERT INTO transfers (bucket, payment_id, seq, currency, from_account, to_account, \
     amount, created_ms) \
     SELECT * FROM UNNEST($34::int2[], $35::text[], $36::int4[], $37::text[], $38::int2[], \
     $39::int2[], $40::int8[], $41::int8[])), \
   refunds_in AS (\
     INSERT INTO refunds (bucket, merchant_id, id, payment_id, amount, currency, created_ms) \
     SELECT * FROM UNNEST($42::int2[], $43::text[], $44::text[], $45::text[], $46::int8[], \
     $47::text[], $48::int8[])), \
   balances_in AS (\
     INSERT INTO balances (bucket, merchant_id, currency, account, amount) \
     SELECT * FROM UNNEST($49::int2[], $50::text[], $51::text[], $52::text[], $53::int8[]) \
     ON CONFLICT (bucket, merchant_id, currency, account) \
     DO UPDATE SET amount = balances.amount + EXCLUDED.amount) \
   SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM changed)";
/// `WRITE_BATCH_SQL`'s parameters.
pub const WRITE_BATCH_PARAMS: usize = 53;

/// Expired idempotency keys, oldest first, a bounded batch at a time (retention.rs), only
/// in buckets this shard owns and no move fences: a copy on its way in or out is the
/// move's to change, and must stay equal to its source for the move's checksums.
pub const PRUNE_IDEMPOTENCY: &str = concat!(
    "DELETE FROM idempotency WHERE (bucket, merchant_id, key) IN \
     (SELECT bucket, merchant_id, key FROM idempotency WHERE created_ms < $1 \
     AND bucket IN (SELECT bucket FROM paytool_buckets WHERE fenced_until_ms IS NULL \
     OR fenced_until_ms <= ",
    db_now_ms!(),
    " FOR SHARE) ORDER BY created_ms LIMIT $2)"
);

/// Rows of one merchant table in a bucket range (`shard plan`, `shard move`).
pub fn in_buckets(table: &str) -> String {
    format!(
        "SELECT COUNT(*), COALESCE(SUM(pg_column_size(t.*)), 0)::int8 FROM {table} t \
         WHERE bucket BETWEEN $1 AND $2"
    )
}

/// What the EXPLAIN test checks: (name, statement). A statement added above and not
/// listed here is a statement nobody checked.
pub fn explained() -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("merchant", MERCHANT.to_string()),
        ("owns_bucket", OWNS_BUCKET.to_string()),
        ("owns", OWNS.to_string()),
        ("roll_key", ROLL_KEY.to_string()),
        ("payment", payment()),
        ("answer", answer()),
        ("list_payments", list_payments()),
        ("balance", BALANCE.to_string()),
        ("owned", OWNED_SQL.to_string()),
        ("idempotency", idempotency_sql()),
        ("payments_for_update", payments_sql()),
        ("write_batch", WRITE_BATCH_SQL.to_string()),
        ("prune_idempotency", PRUNE_IDEMPOTENCY.to_string()),
    ];
    for table in super::layout_ops::MERCHANT_TABLES {
        all.push(("in_buckets", in_buckets(table)));
    }
    all
}
