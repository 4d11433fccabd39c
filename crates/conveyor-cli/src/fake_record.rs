//! Realistic fake records for the Kafka load generator: customers with names,
//! e-mail and postal addresses, paying amounts in a currency. Deterministic for
//! a seed, so two runs produce the same stream.

use fake::faker::address::en::{BuildingNumber, CityName, CountryCode, StreetName, ZipCode};
use fake::faker::internet::en::SafeEmail;
use fake::faker::name::en::Name;
use fake::rand::rngs::StdRng;
use fake::rand::{Rng, SeedableRng};
use fake::Fake;
use serde::Serialize;

/// A postal address.
#[derive(Debug, Serialize)]
pub struct Address {
    street: String,
    city: String,
    zip: String,
    country: String,
}

/// One payment by a customer.
#[derive(Debug, Serialize)]
pub struct Payment {
    /// Sequence number in the run.
    seq: u64,
    /// The customer (also the record's key, so a customer's payments are ordered).
    customer: String,
    name: String,
    email: String,
    address: Address,
    /// Amount in cents.
    amount_cents: u64,
    currency: &'static str,
}

/// Makes payments for `keys` customers; each customer keeps its name and
/// address across records.
pub struct Generator {
    rng: StdRng,
    keys: u64,
}

impl Generator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64, keys: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            keys: keys.max(1),
        }
    }

    /// The key and JSON payload of record `seq`.
    pub fn record(&mut self, seq: u64) -> (String, Vec<u8>) {
        let n = seq % self.keys;
        let customer = format!("customer-{n}");
        // The customer's identity comes from a generator seeded by its number,
        // so it is stable; the amount varies per record.
        let mut who = StdRng::seed_from_u64(n ^ 0x9e37_79b9_7f4a_7c15);
        let payment = Payment {
            seq,
            name: Name().fake_with_rng(&mut who),
            email: SafeEmail().fake_with_rng(&mut who),
            address: Address {
                street: format!(
                    "{} {}",
                    BuildingNumber().fake_with_rng::<String, _>(&mut who),
                    StreetName().fake_with_rng::<String, _>(&mut who)
                ),
                city: CityName().fake_with_rng(&mut who),
                zip: ZipCode().fake_with_rng(&mut who),
                country: CountryCode().fake_with_rng(&mut who),
            },
            customer: customer.clone(),
            amount_cents: self.rng.random_range(100..500_000),
            currency: ["EUR", "USD", "GBP", "JPY"][self.rng.random_range(0..4)],
        };
        let payload = serde_json::to_vec(&payment).unwrap_or_default();
        (customer, payload)
    }
}

/// A plain record: `{"seq": N, "key": "k7"}`.
pub fn plain(seq: u64, keys: u64) -> (String, Vec<u8>) {
    let key = format!("k{}", seq % keys.max(1));
    let payload = serde_json::json!({ "seq": seq, "key": key })
        .to_string()
        .into_bytes();
    (key, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_stable_per_customer() {
        let mut a = Generator::new(7, 10);
        let mut b = Generator::new(7, 10);
        let (k1, p1) = a.record(3);
        let (k2, p2) = b.record(3);
        assert_eq!((k1.as_str(), &p1), (k2.as_str(), &p2));
        let (k3, p3) = a.record(13);
        assert_eq!(k3, "customer-3");
        let v1: serde_json::Value = serde_json::from_slice(&p1).expect("json");
        let v3: serde_json::Value = serde_json::from_slice(&p3).expect("json");
        assert_eq!(v1["name"], v3["name"], "a customer keeps its name");
        assert_eq!(v1["address"], v3["address"]);
        assert!(v1["amount_cents"].as_u64().is_some());
        assert!(!v1["email"].as_str().unwrap_or_default().is_empty());
    }
}
