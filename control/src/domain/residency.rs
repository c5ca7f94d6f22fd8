//! Data residency (KVKK art. 9): which relay regions may carry the media of a consultation.
//!
//! A patient's media stays in the patient's data region (their own, else the deployment's).
//! Another region is permitted only while a transfer basis in force covers it: the patient's
//! explicit consent (`cross-border-transfer`, or `cross-border-transfer-<region>`) or a
//! documented legal basis an admin recorded. Without any region known (a single-region
//! deployment), every relay is permitted. A relay that reports no region counts as being in
//! the deployment's region; one whose region is unknown is never in a restricted set.

use std::collections::BTreeSet;
use std::fmt;

/// The consent purpose that permits a transfer to any region; `…-<region>` permits one.
pub const TRANSFER_CONSENT: &str = "cross-border-transfer";

/// A region label: 1 to 32 lowercase letters, digits or dashes (`tr`, `eu-de`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Region(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a region is 1 to 32 lowercase letters, digits or dashes (such as tr or eu-de)")]
pub struct BadRegion;

impl Region {
    pub fn parse(label: &str) -> Result<Region, BadRegion> {
        let ok = (1..=32).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Region(label.to_owned())) } else { Err(BadRegion) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Region {
    type Error = BadRegion;

    fn try_from(label: String) -> Result<Region, BadRegion> {
        Region::parse(&label)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transfer basis in force: to the regions it names, or to any (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferBasis {
    pub destinations: Option<Vec<Region>>,
}

impl TransferBasis {
    /// The basis a consent purpose code grants, if it is a transfer consent.
    pub fn from_consent_purpose(purpose: &str) -> Option<TransferBasis> {
        let rest = purpose.strip_prefix(TRANSFER_CONSENT)?;
        if rest.is_empty() {
            return Some(TransferBasis { destinations: None });
        }
        let region = Region::parse(rest.strip_prefix('-')?).ok()?;
        Some(TransferBasis { destinations: Some(vec![region]) })
    }
}

/// What the rule knows of one consultation (or one patient's own ICE request).
#[derive(Debug, Clone, Copy)]
pub struct ResidencyFacts<'a> {
    /// control.toml `deployment-region`.
    pub deployment: Option<&'a Region>,
    /// The patient's data region, if one is set on their record.
    pub patient: Option<&'a Region>,
    /// The transfer bases in force for this patient now.
    pub bases: &'a [TransferBasis],
}

/// The relay regions permitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permitted {
    /// No region applies (single-region deployment), or a basis covers every destination.
    Anywhere,
    Only(BTreeSet<Region>),
}

impl Permitted {
    /// Whether a relay reporting `relay_region` (none: the deployment's) may be named. A
    /// relay's label is its own report: one that is not a valid label matches no region.
    pub fn allows(&self, relay_region: Option<&str>, deployment: Option<&Region>) -> bool {
        match self {
            Permitted::Anywhere => true,
            Permitted::Only(set) => {
                relay_region.or(deployment.map(Region::as_str)).is_some_and(|r| set.iter().any(|p| p.as_str() == r))
            }
        }
    }
}

impl fmt::Display for Permitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permitted::Anywhere => f.write_str("any region"),
            Permitted::Only(set) => {
                let names: Vec<&str> = set.iter().map(Region::as_str).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

/// The rule: the patient's data region (else the deployment's), plus what transfer bases in
/// force cover; no home region at all means no restriction.
pub fn permitted_regions(facts: ResidencyFacts<'_>) -> Permitted {
    let Some(home) = facts.patient.or(facts.deployment) else {
        return Permitted::Anywhere;
    };
    let mut set = BTreeSet::from([home.clone()]);
    for basis in facts.bases {
        match &basis.destinations {
            None => return Permitted::Anywhere,
            Some(regions) => set.extend(regions.iter().cloned()),
        }
    }
    Permitted::Only(set)
}

/// Why no relay can be named: the permitted regions and where the usable relays are.
pub fn refusal_reason(permitted: &Permitted, relay_regions: &[Option<&str>], deployment: Option<&Region>) -> String {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for r in relay_regions {
        seen.insert(r.or(deployment.map(Region::as_str)).unwrap_or("no region"));
    }
    let where_they_are = if seen.is_empty() {
        "no relay is usable".to_owned()
    } else {
        format!("usable relays are in {}", seen.into_iter().collect::<Vec<_>>().join(", "))
    };
    format!("no relay in a permitted region for this patient's media: permitted {permitted}; {where_they_are}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(label: &str) -> Region {
        Region::parse(label).unwrap()
    }

    fn only(labels: &[&str]) -> Permitted {
        Permitted::Only(labels.iter().map(|l| r(l)).collect())
    }

    #[test]
    fn region_labels_are_short_lowercase_words() {
        for good in ["tr", "us", "eu-de", "a", &"x".repeat(32)] {
            assert_eq!(Region::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "TR", "t r", "tr_1", "tr.", "ü", &"x".repeat(33)] {
            assert_eq!(Region::parse(bad), Err(BadRegion), "{bad:?}");
        }
    }

    #[test]
    fn without_any_region_everything_is_permitted() {
        let p = permitted_regions(ResidencyFacts { deployment: None, patient: None, bases: &[] });
        assert_eq!(p, Permitted::Anywhere);
        assert!(p.allows(None, None) && p.allows(Some("us"), None));
    }

    #[test]
    fn the_patients_region_wins_over_the_deployments() {
        let (tr, us) = (r("tr"), r("us"));
        let p = permitted_regions(ResidencyFacts { deployment: Some(&us), patient: Some(&tr), bases: &[] });
        assert_eq!(p, only(&["tr"]));
        assert!(p.allows(Some("tr"), Some(&us)));
        assert!(!p.allows(Some("us"), Some(&us)));
        // A label a relay reports that is not a valid region matches nothing.
        assert!(!p.allows(Some("TR"), Some(&us)));
        // A relay without region is in the deployment's region (here us): not permitted.
        assert!(!p.allows(None, Some(&us)));
    }

    #[test]
    fn a_patient_without_region_follows_the_deployment_and_regionless_relays_are_in_it() {
        let tr = r("tr");
        let p = permitted_regions(ResidencyFacts { deployment: Some(&tr), patient: None, bases: &[] });
        assert_eq!(p, only(&["tr"]));
        assert!(p.allows(None, Some(&tr)));
        assert!(!p.allows(Some("us"), Some(&tr)));
    }

    #[test]
    fn a_relay_whose_region_is_unknown_is_not_in_a_restricted_set() {
        let tr = r("tr");
        let p = permitted_regions(ResidencyFacts { deployment: None, patient: Some(&tr), bases: &[] });
        assert!(!p.allows(None, None));
    }

    #[test]
    fn transfer_bases_add_their_destinations_or_lift_the_restriction() {
        let tr = r("tr");
        let to_us = TransferBasis { destinations: Some(vec![r("us")]) };
        let p = permitted_regions(ResidencyFacts {
            deployment: None,
            patient: Some(&tr),
            bases: std::slice::from_ref(&to_us),
        });
        assert_eq!(p, only(&["tr", "us"]));
        assert!(!p.allows(Some("eu-de"), None));
        assert!(p.allows(Some("us"), None));
        let anywhere = TransferBasis { destinations: None };
        let p = permitted_regions(ResidencyFacts { deployment: None, patient: Some(&tr), bases: &[to_us, anywhere] });
        assert_eq!(p, Permitted::Anywhere);
    }

    #[test]
    fn consent_purposes_name_transfer_bases() {
        assert_eq!(
            TransferBasis::from_consent_purpose("cross-border-transfer"),
            Some(TransferBasis { destinations: None })
        );
        assert_eq!(
            TransferBasis::from_consent_purpose("cross-border-transfer-eu-de"),
            Some(TransferBasis { destinations: Some(vec![r("eu-de")]) })
        );
        for other in ["consultation", "cross-border-transferx", "cross-border-transfer-", "cross-border-transfer-US"] {
            assert_eq!(TransferBasis::from_consent_purpose(other), None, "{other}");
        }
    }

    #[test]
    fn the_refusal_names_the_permitted_regions_and_where_the_relays_are() {
        let reason = refusal_reason(&only(&["tr"]), &[Some("us"), None], None);
        assert_eq!(
            reason,
            "no relay in a permitted region for this patient's media: permitted tr; usable relays are in no region, us"
        );
        let reason = refusal_reason(&only(&["tr"]), &[], None);
        assert!(reason.ends_with("permitted tr; no relay is usable"), "{reason}");
    }
}
