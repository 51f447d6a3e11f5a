//! Every statement the PostgreSQL store runs on a merchant table uses an index: EXPLAIN
//! each one's generic plan (the one the group-commit writer keeps for its connection's
//! life) in the writer's own session (`writer::WRITER_SESSION`: sequential scans priced
//! out), on tables never analyzed, as a new shard's are, and fail on a sequential scan.

use crate::support::{PgShards, temp_dir};
use paytool::store::postgres::{sql, writer::WRITER_SESSION};

/// `sql::WRITE_BATCH_SQL`'s arguments: an empty array for each, but the update time
/// ($33), a number.
fn write_batch_args() -> String {
    (1..=sql::WRITE_BATCH_PARAMS)
        .map(|i| if i == 33 { "0" } else { "'{}'" })
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn no_statement_scans_a_merchant_table() {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 1, false);
    pg.apply();
    let client = pg.client(0).await;
    client.batch_execute(WRITER_SESSION).await.unwrap();

    let mut explained = 0;
    for (n, (name, statement)) in sql::explained().into_iter().enumerate() {
        // Arguments as SQL literals: a generic plan does not look at them, but EXECUTE
        // needs values of the right types.
        let write_batch = write_batch_args();
        let args = match name {
            "merchant" | "balance" => "7, 'mer_0'",
            "owns_bucket" | "owns" => "7",
            "roll_key" => "7, 'mer_0', 1, '\\x00'",
            "payment" | "answer" => "7, 'mer_0', 'pay_0'",
            "list_payments" => "7, 'mer_0', 'pay_0', 10",
            "owned" => "'{7}'",
            "idempotency" | "payments_for_update" => "'{7}', '{mer_0}', '{pay_0}'",
            "write_batch" => &write_batch,
            "in_buckets" => "7, 7",
            "prune_idempotency" => "0, 10",
            other => panic!("no arguments for statement {other:?}: add them here"),
        };
        client
            .batch_execute(&format!("PREPARE explained_{n} AS {statement}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN (VERBOSE) EXECUTE explained_{n}({args})"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        // Placeholders in the plan show it is the generic one, made without the values.
        assert!(plan.contains("$1"), "{name}: not a generic plan:\n{plan}");
        // `paytool_buckets` (1,024 rows, the shard's own record) may be read whole.
        for table in paytool::store::postgres::layout_ops::MERCHANT_TABLES {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{name} scans {table}:\n{statement}\n{plan}"
            );
        }
        assert!(plan.contains("Index"), "{name}: {plan}");
        explained += 1;
    }
    assert!(explained >= 10, "{explained} statements");
}
