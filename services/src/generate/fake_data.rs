//! Fake people, addresses, jobs and company names in the reference producers' style, plus UUIDs,
//! all from one seeded rng.

use fake::faker::address::en::{CityName, StateAbbr, StreetName};
use fake::faker::company::en::CompanyName;
use fake::faker::job::en::Title as JobTitle;
use fake::faker::name::en::Name;
use fake::faker::number::en::NumberWithFormat;
use fake::Fake;
use rand::rngs::StdRng;
use rand::RngExt;
use uuid::Uuid;

/// A seeded source of fake field values.
pub struct FakeData {
    rng: StdRng,
}

impl FakeData {
    pub fn new(rng: StdRng) -> Self {
        Self { rng }
    }

    /// The underlying rng, for the generators' own draws (mix, user ids, `active`).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// A version-4 UUID drawn from the seeded rng rather than the OS, so output is reproducible.
    pub fn event_id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    /// `"First Last"`.
    pub fn person_name(&mut self) -> String {
        Name().fake_with_rng(&mut self.rng)
    }

    /// `"7259 Jordan Lakes\nLake Gregory, VA 18774"` or, half the time, with a secondary unit
    /// (`"… Suite 228\n…"`), the shape of the reference producers' (Python Faker `en_US`) addresses.
    ///
    /// Composed here rather than taken whole from `fake`: its building numbers and zip codes may have
    /// 3–4 digits or a leading zero and its secondary units read `"Suit."`, none of which the
    /// reference producers write.
    pub fn address(&mut self) -> String {
        let building: String =
            NumberWithFormat(["^##", "^###", "^####"][self.rng.random_range(0..3)])
                .fake_with_rng(&mut self.rng);
        let street: String = StreetName().fake_with_rng(&mut self.rng);
        let secondary = if self.rng.random_bool(0.5) {
            let unit = if self.rng.random_bool(0.5) {
                "Apt."
            } else {
                "Suite"
            };
            format!(" {unit} {}", self.rng.random_range(100..1000))
        } else {
            String::new()
        };
        let city: String = CityName().fake_with_rng(&mut self.rng);
        let state: String = StateAbbr().fake_with_rng(&mut self.rng);
        let zip = self.rng.random_range(501..=99_950);
        format!("{building} {street}{secondary}\n{city}, {state} {zip:05}")
    }

    /// A job title such as `"Senior Marketing Manager"`.
    pub fn job(&mut self) -> String {
        JobTitle().fake_with_rng(&mut self.rng)
    }

    /// A merchant such as `"Smith and Sons"`.
    pub fn company_name(&mut self) -> String {
        CompanyName().fake_with_rng(&mut self.rng)
    }

    /// Uniform in `[0, 1)`.
    pub fn score(&mut self) -> f64 {
        self.rng.random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::generate::stream_rng;

    #[test]
    fn addresses_have_the_two_line_reference_shape() {
        let mut data = FakeData::new(stream_rng(7, EventKind::User, 0));
        for _ in 0..500 {
            let address = data.address();
            let (street, city_line) = address.split_once('\n').expect("two lines");
            assert!(!city_line.contains('\n'), "{address:?}");
            let building = street.split(' ').next().expect("building number first");
            assert!(
                (3..=5).contains(&building.len()) && !building.starts_with('0'),
                "{address:?}"
            );
            let (city, state_zip) = city_line.rsplit_once(", ").expect("city, ST zip");
            assert!(!city.is_empty(), "{address:?}");
            let (state, zip) = state_zip.split_once(' ').expect("ST zip");
            assert_eq!(state.len(), 2, "{address:?}");
            assert!(
                zip.len() == 5 && zip.bytes().all(|b| b.is_ascii_digit()),
                "{address:?}"
            );
        }
    }

    #[test]
    fn event_ids_are_version_4_and_reproducible() {
        let ids = |seed| {
            let mut data = FakeData::new(stream_rng(seed, EventKind::Card, 0));
            (0..3).map(|_| data.event_id()).collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ids(1));
        assert_ne!(ids(1), ids(2));
        assert!(ids(1).iter().all(|id| id.get_version_num() == 4));
    }
}
