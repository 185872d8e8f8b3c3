//! The stub's catalogue: clubs, games (a front and a back nine each) and time slots per day,
//! generated from a seed or loaded from a JSON file. The same seed and spec always give the same
//! catalogue, byte for byte.

use std::path::Path;

use anyhow::Context as _;
use chrono::{Duration, NaiveDate};
use contracts::course::{Game, SlotStatus, TimeSlot};
use contracts::Won;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The shape of a generated catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSpec {
    /// Clubs.
    pub clubs: u32,
    /// Games per club.
    pub games_per_club: u32,
    /// Days of slots, from `start`.
    pub days: u32,
    /// Slots per game per day, every 30 minutes from 06:00.
    pub slots_per_day: u32,
    /// Seats per slot.
    pub max_players: i32,
    /// The first day.
    pub start: NaiveDate,
}

impl CatalogSpec {
    /// A small catalogue starting on `start`: 2 clubs × 2 games × 3 days × 8 slots of 4 seats.
    pub fn small(start: NaiveDate) -> Self {
        Self {
            clubs: 2,
            games_per_club: 2,
            days: 3,
            slots_per_day: 8,
            max_players: 4,
            start,
        }
    }
}

/// Games and their slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Every game.
    pub games: Vec<Game>,
    /// Every slot, `bookedPlayers` as generated (zero).
    pub slots: Vec<TimeSlot>,
}

const CLUB_NAMES: [&str; 6] = ["한강", "올림픽", "월드컵", "서울숲", "남산", "북한산"];
const COURSE_NAMES: [&str; 6] = ["A코스", "B코스", "C코스", "D코스", "E코스", "F코스"];

impl Catalog {
    /// Generates a catalogue from `seed`.
    pub fn generate(seed: u64, spec: &CatalogSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut games = Vec::new();
        let mut slots = Vec::new();
        let mut slot_id = 1;
        for club in 0..spec.clubs {
            let club_id = i32::try_from(club + 1).unwrap_or(i32::MAX);
            let club_name = format!(
                "{} 파크골프장",
                CLUB_NAMES[club as usize % CLUB_NAMES.len()]
            );
            for g in 0..spec.games_per_club {
                let game_id = i32::try_from(club * spec.games_per_club + g + 1).unwrap_or(i32::MAX);
                let front = COURSE_NAMES[(2 * g as usize) % COURSE_NAMES.len()];
                let back = COURSE_NAMES[(2 * g as usize + 1) % COURSE_NAMES.len()];
                let base = 10_000 + 1_000 * i64::from(rng.random_range(0..=10u8));
                let game = Game {
                    id: game_id,
                    name: format!("{front}+{back}"),
                    code: format!("C{club_id}G{game_id}"),
                    description: Some(format!("전반 {front}, 후반 {back}")),
                    front_nine_course_id: game_id * 10 + 1,
                    front_nine_course_name: front.to_owned(),
                    back_nine_course_id: game_id * 10 + 2,
                    back_nine_course_name: back.to_owned(),
                    total_holes: 18,
                    estimated_duration: 180,
                    break_duration: 10,
                    max_players: spec.max_players,
                    base_price: Won(base),
                    weekend_price: Some(Won(base + 3_000)),
                    holiday_price: None,
                    club_id,
                    club_name: club_name.clone(),
                    is_active: true,
                };
                for day in 0..spec.days {
                    let date = spec.start + Duration::days(i64::from(day));
                    for n in 0..spec.slots_per_day {
                        let minutes = 6 * 60 + 30 * n;
                        let end = minutes + 180;
                        let premium = rng.random_bool(0.2);
                        slots.push(TimeSlot {
                            id: slot_id,
                            game_id,
                            game_name: game.name.clone(),
                            game_code: game.code.clone(),
                            front_nine_course_name: front.to_owned(),
                            back_nine_course_name: back.to_owned(),
                            club_id: Some(club_id),
                            club_name: club_name.clone(),
                            date,
                            start_time: format!("{:02}:{:02}", (minutes / 60) % 24, minutes % 60),
                            end_time: format!("{:02}:{:02}", (end / 60) % 24, end % 60),
                            max_players: spec.max_players,
                            booked_players: 0,
                            price: Won(if premium { base + 5_000 } else { base }),
                            is_premium: premium,
                            status: SlotStatus::Available,
                            is_active: true,
                        });
                        slot_id += 1;
                    }
                }
                games.push(game);
            }
        }
        Self { games, slots }
    }

    /// Loads a catalogue from a JSON file (`{"games":[..],"slots":[..]}` in the wire's field names).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let catalog: Catalog =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for slot in &catalog.slots {
            contracts::Validate::validate(slot)
                .map_err(|v| anyhow::anyhow!("slot {} in {}: {v:?}", slot.id, path.display()))?;
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CatalogSpec {
        CatalogSpec::small(NaiveDate::from_ymd_opt(2030, 5, 1).unwrap())
    }

    #[test]
    fn the_same_seed_gives_the_same_catalogue_byte_for_byte() {
        let a = serde_json::to_vec(&Catalog::generate(7, &spec())).unwrap();
        let b = serde_json::to_vec(&Catalog::generate(7, &spec())).unwrap();
        assert_eq!(a, b);
        let c = serde_json::to_vec(&Catalog::generate(8, &spec())).unwrap();
        assert_ne!(a, c, "another seed, another catalogue");
    }

    #[test]
    fn the_spec_sets_the_counts_and_every_slot_is_valid() {
        let catalog = Catalog::generate(1, &spec());
        assert_eq!(catalog.games.len(), 4);
        assert_eq!(catalog.slots.len(), 4 * 3 * 8);
        for slot in &catalog.slots {
            contracts::Validate::validate(slot).unwrap();
            assert!(catalog.games.iter().any(|g| g.id == slot.game_id));
        }
        let ids: std::collections::HashSet<i32> = catalog.slots.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), catalog.slots.len());
    }
}
