//! Every statement the PostgreSQL store runs on a merchant table uses an index: EXPLAIN
//! each one (with sequential scans priced out, so a plan keeps one only when no index
//! can serve) and fail on a sequential scan.

use crate::support::{PgShards, temp_dir};
use paytool::store::postgres::sql;
use tokio_postgres::types::ToSql;

#[tokio::test]
async fn no_statement_scans_a_merchant_table() {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 1, false);
    pg.apply();
    let client = pg.client(0).await;
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();

    let (b, m, id): (i16, &str, &str) = (7, "mer_0", "pay_0");
    let (bs, ms, ids) = (vec![b], vec![m], vec![id]);
    let (st, amounts) = (vec!["succeeded"], vec![1i64]);
    let now = 0i64;
    let (until, hash): (Option<i64>, &[u8]) = (Some(1), &[0u8; 32]);
    let mut explained = 0;
    for (name, statement) in sql::explained() {
        let params: Vec<&(dyn ToSql + Sync)> = match name {
            "merchant" | "balance" => vec![&b, &m],
            "owns_bucket" | "owns" => vec![&b],
            "roll_key" => vec![&b, &m, &until, &hash],
            "payment" | "answer" => vec![&b, &m, &id],
            "list_payments" => vec![&b, &m, &id, &now],
            "owned" => vec![&bs],
            "idempotency" | "payments_for_update" => vec![&bs, &ms, &ids],
            "update_payments" => vec![&bs, &ms, &ids, &st, &amounts, &amounts, &now],
            "in_buckets" => vec![&b, &b],
            "prune_idempotency" => vec![&now, &now],
            other => panic!("no parameters for statement {other:?}: add them here"),
        };
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {statement}"), &params)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
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
