//! Key names. Every key starts with the prefix (`paytool:` by default: `cache flush`
//! removes only these) and carries its merchant as a hash tag, `{mer_...}`, so one
//! merchant's keys live in one Redis Cluster slot.

pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    fn of(&self, merchant: &str, rest: &str) -> String {
        format!("{}{{{merchant}}}:{rest}", self.prefix)
    }

    pub fn api_key(&self, merchant: &str, hash: &[u8; 32]) -> String {
        self.of(merchant, &format!("key:{}", hex::encode(hash)))
    }

    pub fn generation(&self, merchant: &str) -> String {
        self.of(merchant, "gen")
    }

    pub fn idempotency(&self, merchant: &str, key: &str) -> String {
        self.of(merchant, &format!("idem:{key}"))
    }

    pub fn payment(&self, merchant: &str, id: &str) -> String {
        self.of(merchant, &format!("pay:{id}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_merchants_keys_share_a_hash_tag_under_the_prefix() {
        let k = super::Keys::new("paytool:");
        assert_eq!(k.payment("mer_1", "pay_2"), "paytool:{mer_1}:pay:pay_2");
        assert_eq!(k.idempotency("mer_1", "k"), "paytool:{mer_1}:idem:k");
        assert_eq!(k.generation("mer_1"), "paytool:{mer_1}:gen");
        assert!(
            k.api_key("mer_1", &[0; 32])
                .starts_with("paytool:{mer_1}:key:0000")
        );
    }
}
