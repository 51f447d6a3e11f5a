//! Sizing a group from a measured run: one instance's capacity is the highest rate that
//! met every threshold; the fleet must carry the peak at the target utilization and
//! survive the loss of a zone.

use crate::profile::scale::ScaleProfile;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SizingInput {
    /// Requests per second one instance met every threshold at.
    pub capacity_per_instance_rps: f64,
    pub peak_rps: f64,
    /// Fraction of that capacity to plan for (0 < u <= 1).
    pub utilization: f64,
    /// Zones the group spans; with 2 or more, losing one must leave enough.
    pub zones: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sizing {
    pub input: SizingInput,
    /// ceil(peak / (capacity x utilization)).
    pub for_peak: u64,
    /// for_peak x Z/(Z-1), rounded up: what survives a zone loss.
    pub with_zone_loss: u64,
    /// Rounded up to a multiple of Z, so zones stay balanced.
    pub instances: u64,
    /// The arithmetic, one line a step, for people.
    pub working: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SizingError {
    #[error("capacity per instance must be above 0 (the run measured {0} req/s)")]
    NoCapacity(f64),
    #[error("utilization must be above 0 and at most 1, not {0}")]
    Utilization(f64),
    #[error("zones must be 1 to 10, not {0}")]
    Zones(u32),
    #[error("the peak must be 0 or more requests per second, not {0}")]
    Peak(f64),
}

pub fn size(input: SizingInput) -> Result<Sizing, SizingError> {
    let i = &input;
    if !(i.capacity_per_instance_rps > 0.0 && i.capacity_per_instance_rps.is_finite()) {
        return Err(SizingError::NoCapacity(i.capacity_per_instance_rps));
    }
    if !(i.utilization > 0.0 && i.utilization <= 1.0) {
        return Err(SizingError::Utilization(i.utilization));
    }
    if !(1..=10).contains(&i.zones) {
        return Err(SizingError::Zones(i.zones));
    }
    if !(i.peak_rps >= 0.0 && i.peak_rps.is_finite()) {
        return Err(SizingError::Peak(i.peak_rps));
    }
    let usable = i.capacity_per_instance_rps * i.utilization;
    let for_peak = ((i.peak_rps / usable).ceil() as u64).max(1);
    let z = i.zones as u64;
    let with_zone_loss = if z >= 2 {
        (for_peak * z).div_ceil(z - 1)
    } else {
        for_peak
    };
    let instances = with_zone_loss.div_ceil(z) * z;
    let mut working = vec![
        format!(
            "capacity per instance {:.1} req/s x utilization {} = {:.1} req/s usable",
            i.capacity_per_instance_rps, i.utilization, usable
        ),
        format!(
            "ceil(peak {:.1} / {:.1}) = {for_peak} instances for the peak",
            i.peak_rps, usable
        ),
    ];
    if z >= 2 {
        working.push(format!(
            "{for_peak} x {z}/{} (lose one of {z} zones) = {with_zone_loss}, rounded up",
            z - 1
        ));
    } else {
        working.push("1 zone: no headroom for a zone loss".into());
    }
    working.push(format!(
        "rounded up to a multiple of {z} zones = {instances} instances"
    ));
    Ok(Sizing {
        input,
        for_peak,
        with_zone_loss,
        instances,
        working,
    })
}

/// Peak requests per second from a daily volume and a peak-to-average factor.
pub fn peak_from_daily(daily: f64, peak_factor: f64) -> f64 {
    daily / 86_400.0 * peak_factor
}

/// The peak to size for, as given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peak {
    Rps(f64),
    Daily {
        requests_per_day: f64,
        peak_factor: f64,
    },
}

impl Peak {
    pub fn rps(self) -> f64 {
        match self {
            Peak::Rps(rps) => rps,
            Peak::Daily {
                requests_per_day,
                peak_factor,
            } => peak_from_daily(requests_per_day, peak_factor),
        }
    }
}

/// Zones when neither the caller nor the profile says: the fewest that survive a zone loss.
pub const ZONES_DEFAULT: u32 = 2;

/// The zones to size for: those given, else the profile's (availability zones or
/// subnets, whichever it lists more of: a subnet lives in one zone), else ZONES_DEFAULT.
pub fn zones(given: Option<u32>, profile: Option<&ScaleProfile>) -> u32 {
    given
        .or_else(|| {
            profile
                .map(|p| p.group.availability_zones.len().max(p.group.subnets.len()) as u32)
                .filter(|z| *z > 0)
        })
        .unwrap_or(ZONES_DEFAULT)
}

/// Whether a profile's group can hold what a sizing needs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Coverage {
    pub min: i32,
    pub max: i32,
    /// max >= the instances needed: `scale size -p` fails otherwise.
    pub covers: bool,
    /// min > the instances needed: not wrong, but paid for at every hour of the day.
    pub min_above_need: bool,
}

pub fn coverage(profile: &ScaleProfile, sizing: &Sizing) -> Coverage {
    let (min, max) = (profile.group.min, profile.group.max);
    Coverage {
        min,
        max,
        covers: i64::from(max) >= sizing.instances as i64,
        min_above_need: i64::from(min) > sizing.instances as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_arithmetic() {
        // One billion a day at 3x peak: 34,722 req/s; 5,000 req/s per instance at 60%.
        let peak = peak_from_daily(1e9, 3.0);
        assert!((peak - 34_722.2).abs() < 0.1);
        let s = size(SizingInput {
            capacity_per_instance_rps: 5_000.0,
            peak_rps: peak,
            utilization: 0.6,
            zones: 3,
        })
        .unwrap();
        // ceil(34722.2 / 3000) = 12; 12 x 3/2 = 18; a multiple of 3 already.
        assert_eq!((s.for_peak, s.with_zone_loss, s.instances), (12, 18, 18));
        let s2 = size(SizingInput {
            zones: 2,
            ..s.input.clone()
        })
        .unwrap();
        // 12 x 2/1 = 24.
        assert_eq!(s2.instances, 24);
        let s4 = size(SizingInput {
            zones: 4,
            ..s.input
        })
        .unwrap();
        // 12 x 4/3 = 16, a multiple of 4.
        assert_eq!(s4.instances, 16);
    }

    #[test]
    fn rounds_up_to_whole_zones() {
        let s = size(SizingInput {
            capacity_per_instance_rps: 1000.0,
            peak_rps: 2500.0,
            utilization: 1.0,
            zones: 2,
        })
        .unwrap();
        // ceil(2.5) = 3; 3 x 2 = 6; already a multiple of 2.
        assert_eq!(s.instances, 6);
        let s = size(SizingInput {
            zones: 3,
            ..s.input
        })
        .unwrap();
        // 3 x 3/2 = 4.5 -> 5 -> 6.
        assert_eq!((s.with_zone_loss, s.instances), (5, 6));
    }

    fn profile(zones: &[&str], subnets: &[&str], min: i32, max: i32) -> ScaleProfile {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        let mut p: ScaleProfile = toml::from_str(
            "[group]\nname = \"g\"\nmin = 1\nmax = 1\nlaunch_configuration = \"lc\"\n",
        )
        .unwrap();
        (p.group.min, p.group.max) = (min, max);
        p.group.availability_zones = list(zones);
        p.group.subnets = list(subnets);
        p
    }

    #[test]
    fn zones_come_from_the_flag_then_the_profile_then_the_default() {
        let three = profile(&["a", "b", "c"], &[], 1, 10);
        let two_subnets = profile(&[], &["subnet-1", "subnet-2"], 1, 10);
        let none = profile(&[], &[], 1, 10);
        assert_eq!(zones(Some(4), Some(&three)), 4);
        assert_eq!(zones(None, Some(&three)), 3);
        assert_eq!(zones(None, Some(&two_subnets)), 2);
        assert_eq!(zones(None, Some(&none)), ZONES_DEFAULT);
        assert_eq!(zones(None, None), ZONES_DEFAULT);
    }

    #[test]
    fn a_peak_is_given_or_derived_from_a_day() {
        assert_eq!(Peak::Rps(550.0).rps(), 550.0);
        let daily = Peak::Daily {
            requests_per_day: 86_400.0,
            peak_factor: 3.0,
        };
        assert_eq!(daily.rps(), 3.0);
    }

    #[test]
    fn coverage_compares_max_and_min_with_the_need() {
        let s = size(SizingInput {
            capacity_per_instance_rps: 200.0,
            peak_rps: 550.0,
            utilization: 0.5,
            zones: 2,
        })
        .unwrap();
        assert_eq!(s.instances, 12);
        let c = coverage(&profile(&["a", "b"], &[], 1, 10), &s);
        assert!(!c.covers && !c.min_above_need);
        let c = coverage(&profile(&["a", "b"], &[], 1, 12), &s);
        assert!(c.covers);
        let c = coverage(&profile(&["a", "b"], &[], 14, 20), &s);
        assert!(c.covers && c.min_above_need);
    }

    #[test]
    fn refuses_nonsense() {
        let ok = SizingInput {
            capacity_per_instance_rps: 1.0,
            peak_rps: 1.0,
            utilization: 0.5,
            zones: 2,
        };
        assert!(
            size(SizingInput {
                utilization: 0.0,
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            size(SizingInput {
                capacity_per_instance_rps: 0.0,
                ..ok.clone()
            })
            .is_err()
        );
        assert!(size(SizingInput { zones: 0, ..ok }).is_err());
    }
}
